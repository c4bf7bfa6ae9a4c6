"""``make run`` (``python -m masterd.demo``): all on TLS, it ends 0 and shows a job through
ganeti-masterd reaching the node."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT, node_env


@pytest.mark.slow
def test_make_run_shows_a_job_through_masterd_reaching_the_tls_node() -> None:
    """Before masterd called nodes over TLS, the job's node ended unreachable."""
    done = subprocess.run([sys.executable, "-m", "masterd.demo"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=node_env())  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "node 'demo-node'" in done.stdout  # named by its certificate: no --name
    assert "demo-node: ok 'hello, nodes'" in done.stdout, done.stdout
    assert "the job finished: 1 ok" in done.stdout, done.stdout
