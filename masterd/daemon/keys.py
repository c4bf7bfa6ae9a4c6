"""The typed keys of what ganeti-masterd's application holds (aiohttp's ``web.AppKey``)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from masterd.commands import Commands
from masterd.daemon.commands import CommandRunner
from masterd.daemon.config import MasterdConfig
from masterd.daemon.events import EventLog
from masterd.daemon.metrics import MasterdMetrics
from masterd.daemon.registry import NodeRegistry
from masterd.daemon.roles import Caller
from masterd.jobs.service import Jobs
from masterd.store.base import Store

#: who is calling: the name and role a TLS client certificate names; None without TLS
#: (anyone who reaches a loopback port)
CallerOf = Callable[[web.Request], Caller | None]

CONFIG = web.AppKey("config", MasterdConfig)
STORE: web.AppKey[Store] = web.AppKey("store")
REGISTRY = web.AppKey("registry", NodeRegistry)
EVENTS = web.AppKey("events", EventLog)
METRICS = web.AppKey("metrics", MasterdMetrics)
CALLER_OF: web.AppKey[CallerOf] = web.AppKey("caller_of")
#: the master commands (--commands) and what runs them (CallMaster)
COMMANDS = web.AppKey("commands", Commands)
COMMAND_RUNNER = web.AppKey("command_runner", CommandRunner)
#: this masterd process's id, made at its start (a job's ``owner``)
INSTANCE = web.AppKey("instance", str)
#: Register's ``masters``: the live masterd as nodes reach them (with one masterd, itself;
#: filled once it listens, so that --port 0 tells the port it got)
MASTERS: web.AppKey[list[str]] = web.AppKey("masters")
#: the jobs (SubmitJob ... ListJobs) this masterd runs
JOBS = web.AppKey("jobs", Jobs)
