"""The node's side of ``ganeti-masterd`` (PROTOCOL.md part 2): the link to the masters
(:mod:`.link`), the event spool (:mod:`.spool`), the reporter that registers, heartbeats
and delivers events (:mod:`.reporter`), the relay of ``call_master`` (:mod:`.relay`), and
their place in the daemon's life (:mod:`.context`)."""
