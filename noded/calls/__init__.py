"""Calls: starting, waiting for, aborting and keeping function calls, and their records.

- :mod:`noded.calls.supervisor`: every call from start to expiry (what handlers talk to);
- :mod:`noded.calls.table`: running and retained calls, by fnc_id and request_id;
- :mod:`noded.calls.lost`: calls an earlier daemon lost, whose request_ids still name them;
- :mod:`noded.calls.recorder`: what is written of each call, in the journal and the
  audit log, and when;
- :mod:`noded.calls.journal`: the calls on disk (records only; it starts and kills nothing),
  with :mod:`noded.calls.records` (how a record is written and checked) and
  :mod:`noded.calls.compaction` (its rewrite, off the event loop);
- :mod:`noded.calls.recovery`: taking over from a daemon that stopped with calls running;
- :mod:`noded.calls.audit`: the audit log, a hash chain made durable by group commit;
- :mod:`noded.calls.outcomes`: what a process did -> the call's result or error;
- :mod:`noded.calls.listing`: a call as ListFunctions shows it.
"""
