"""The typed keys of what the application holds (aiohttp's ``web.AppKey``)."""

from __future__ import annotations

from aiohttp import web

from noded.calls.supervisor import Supervisor
from noded.config import NodedConfig
from noded.http.guard import Guard
from noded.identity import Identity
from noded.registry import Registry

CONFIG = web.AppKey("config", NodedConfig)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
IDENTITY = web.AppKey("identity", Identity)
REGISTRY = web.AppKey("registry", Registry)
GUARD = web.AppKey("guard", Guard)
