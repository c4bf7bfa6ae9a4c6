"""aiohttp's private names that the daemons use, for want of public extension points
(rpc_client/http_runner.py: the request handler class; rpc_client/serving/listener.py and
tls_site.py: sites that accept their own connections).  setup.cfg pins aiohttp to the
series these were checked against; this test fails first if a release renames one."""

from __future__ import annotations

import configparser
import inspect
from importlib.metadata import version
from pathlib import Path

from aiohttp import web
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent

#: what rpc_client/serving/listener.py and tls_site.py read and set on their TCPSite
SITE_NAMES = ("_host", "_port", "_backlog", "_ssl_context", "_server", "_bound_port", "_runner")


def aiohttp_requirement() -> Requirement:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].split()
    return next(Requirement(line) for line in lines if line.startswith("aiohttp"))


def test_aiohttp_is_pinned_below_a_series_not_checked_and_the_installed_one_fits() -> None:
    requirement = aiohttp_requirement()
    assert any(spec.operator == "<" for spec in requirement.specifier), requirement
    assert version("aiohttp") in requirement.specifier, (version("aiohttp"), requirement)


async def test_the_private_names_the_daemons_use_are_there() -> None:
    runner = web.AppRunner(web.Application())
    assert inspect.iscoroutinefunction(runner._make_server)  # ContractRunner overrides it
    await runner.setup()
    try:
        server = runner.server
        assert server is not None
        assert server._loop is not None and isinstance(server._kwargs, dict)
        assert inspect.signature(web.Server).parameters.keys() >= {
            "request_factory", "handler_cancellation", "loop"
        }  # fmt: skip
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=8)
        missing = [name for name in SITE_NAMES if not hasattr(site, name)]
        assert missing == []
    finally:
        await runner.cleanup()
