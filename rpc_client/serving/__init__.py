"""What both daemons need at their door, once: a listening site that accepts its own
connections within a descriptor budget (:mod:`.descriptors`, :mod:`.listener`), so that
running out of file descriptors ends in a ``503 Busy`` answer and a log line, never a
reset connection; and its TLS twin, which logs a refused handshake (:mod:`.tls_site`).
ganeti-noded and ganeti-masterd each make one per listening port."""
