"""The takeover soak (issue 32, "Faults"): two real ganeti-masterd on one real
PostgreSQL and four real nodes; each round a 4-node job is submitted to one master,
that master is SIGKILLed at a random moment of the job and started again, the other
(or the restarted one) finishes the job, and every node ran the function exactly once.

The moments are drawn from a seeded ``random.Random``; a failure names the seed and the
round.  ``MASTERD_SOAK_ROUNDS`` sets the rounds and ``MASTERD_SOAK_SEED`` replays a seed;
a longer soak::

    MASTERD_SOAK_ROUNDS=100 MASTERD_SOAK_SEED=1234 \\
        .venv/bin/python -m pytest tests/masterd/jobs/test_takeover_soak.py -p no:cacheprovider

By default :data:`DEFAULT_ROUNDS` (20, the issue's number): a round costs a takeover
(``--lease-s 1``: the killed owner's row lapses within about 1.3 s) and the job's rest,
about 1.7 s at a load average of 3 (12 rounds took 21 s in a full slow run), 2 to 3.5 s
on two busy CPUs (20 rounds took 86 s at a load average of 12).
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from masterd.local import LocalNode
from tests.helpers import NodeFactory
from tests.masterd.daemon.running import Masterd, start_masterd, until
from tests.masterd.jobs.fleet import by_node, follow, register, runs

DEFAULT_ROUNDS = 20
ROUNDS = int(os.environ.get("MASTERD_SOAK_ROUNDS", str(DEFAULT_ROUNDS)))
SEED = int(os.environ.get("MASTERD_SOAK_SEED", str(random.randrange(2**32))))
NAMES = ("n1", "n2", "n3", "n4")
LEASE_S = 1.0
#: the kill comes this long after SubmitJob answered, at most (the job takes 0.6 s or more)
KILL_WITHIN_S = 0.8
#: a round's job must end within this
ROUND_TIMEOUT_S = 30.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 + ROUNDS * 10)]


def _args(postgres_url: str) -> list[str]:
    return ["--store", postgres_url, "--heartbeat-s", "1", "--lease-s", str(LEASE_S)]


async def _knows_all(masterd: Masterd) -> bool:
    return set(NAMES) <= set(await masterd.nodes())


class Soak:
    """Two masters, one of them SIGKILLed and started again each round: the one killed
    in a round is started again while the next round's job runs, and must then take
    that job over."""

    def __init__(self, masters: list[Masterd], args: list[str], tmp_path: Path) -> None:
        self.masters, self.args, self.tmp_path = masters, args, tmp_path
        self.rng = random.Random(SEED)
        self.again: asyncio.Task[Masterd] | None = None

    async def round(self, number: int) -> None:
        owner = self.masters[number % 2]
        count = self.tmp_path / f"runs-{number}.txt"
        state = await owner.ok("SubmitJob", {"fn_name": "node_behaviour", "timeout": 20,
                                             "window": 2,
                                             "fn_args": {"count_path": str(count)}})  # fmt: skip
        await asyncio.sleep(self.rng.uniform(0.0, KILL_WITHIN_S))  # the random moment
        await owner.kill()
        other = await self._other(number)
        self.again = asyncio.create_task(start_masterd(self.args, owner.workdir))
        final, items = await follow(other, state["job_id"], timeout_s=ROUND_TIMEOUT_S)
        assert final["state"] == "finished", final
        outcomes = {name: r["outcome"] for name, r in by_node(items).items()}
        assert outcomes == dict.fromkeys(NAMES, "ok"), outcomes
        assert runs(count) == dict.fromkeys(NAMES, 1), f"executions: {dict(runs(count))}"

    async def _other(self, number: int) -> Masterd:
        """The master not killed this round (started again after the last, if it was)."""
        if self.again is not None:
            self.masters[1 - number % 2] = await self.again
            self.again = None
        return self.masters[1 - number % 2]

    async def stop(self) -> None:
        if self.again is not None:
            self.masters.append(await self.again)
        for masterd in self.masters:
            await masterd.stop()


async def _start(soak: Soak, make_node: NodeFactory) -> list[LocalNode]:
    """Both masters (they take turns on the migrations) and the nodes, all at once."""
    started = await asyncio.gather(
        *(start_masterd(soak.args, soak.tmp_path / workdir) for workdir in ("a", "b")),
        *(make_node(name, delay_s=0.3) for name in NAMES), return_exceptions=True,
    )  # fmt: skip
    soak.masters += [masterd for masterd in started if isinstance(masterd, Masterd)]
    for failed in started:
        if isinstance(failed, BaseException):
            raise failed
    return [node for node in started if isinstance(node, LocalNode)]


async def test_a_job_whose_owner_is_sigkilled_at_random_runs_once_per_node_every_round(
    postgres_url: str, tmp_path: Path, make_node: NodeFactory
) -> None:
    args = _args(postgres_url)
    soak = Soak([], args, tmp_path)
    try:
        for name, node in zip(NAMES, await _start(soak, make_node), strict=True):
            await register(soak.masters[0], node, name, [])
        await until(lambda: _knows_all(soak.masters[1]), timeout_s=15)
        for number in range(ROUNDS):
            try:
                await soak.round(number)
            except Exception as exc:
                raise AssertionError(f"round {number} of {ROUNDS}, MASTERD_SOAK_SEED={SEED}: "
                                     f"{exc}") from exc  # fmt: skip
    finally:
        await soak.stop()
    for masterd in soak.masters:
        assert "Traceback" not in masterd.log_text()
