"""ganeti-masterd: the master daemon nodes call (PROTOCOL.md part 2).

Built like ganeti-noded: a frozen :class:`~masterd.daemon.config.MasterdConfig` made by
:mod:`masterd.daemon.cli`, :func:`~masterd.daemon.app.create_app`, typed keys, errors in
one middleware; its state in :mod:`masterd.store`.
"""
