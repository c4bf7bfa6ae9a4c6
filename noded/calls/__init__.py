"""Calls: starting, waiting for, aborting and keeping function calls, and their journal.

- :mod:`noded.calls.supervisor`: every call from start to expiry (what handlers talk to);
- :mod:`noded.calls.table`: running and retained calls, by fnc_id and request_id;
- :mod:`noded.calls.journal`: the calls on disk (records only; it starts and kills nothing);
- :mod:`noded.calls.outcomes`: what a process did -> the call's result or error.
"""
