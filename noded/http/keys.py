"""The typed keys of what the application holds (aiohttp's ``web.AppKey``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from noded.calls.supervisor import Supervisor
from noded.config import NodedConfig
from noded.http.guard import Guard
from noded.identity import Identity
from rpc_client.serving.descriptors import DescriptorBudget

#: ReloadFunctions: re-import the function modules; (reloaded, error)
Reload = Callable[[], Awaitable[Any]]

CONFIG = web.AppKey("config", NodedConfig)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
IDENTITY = web.AppKey("identity", Identity)
GUARD = web.AppKey("guard", Guard)
DESCRIPTORS = web.AppKey("descriptors", DescriptorBudget)
RELOAD: web.AppKey[Reload] = web.AppKey("reload")
