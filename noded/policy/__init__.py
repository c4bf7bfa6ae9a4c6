"""Who may run what: ``--policy FILE``'s rules (:mod:`noded.policy.rules`) and the JSON
Schemas of their arguments (:mod:`noded.policy.arg_schemas`), loaded and checked here;
the door that asks them is :mod:`noded.http.guard`.  Imports nothing, so that a daemon
without a policy loads no jsonschema."""
