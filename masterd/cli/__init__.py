"""``rpc-cli``: a master-side tool for calling nodes by hand (:mod:`.main`), many at once
(:mod:`.gather`), and making certificates (:mod:`.certs`)."""
