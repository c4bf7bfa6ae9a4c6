"""The store backends daemon tests run over (as tests/masterd/store does in process): a
fixture parametrized by :data:`BACKENDS` passes :func:`store_args` to ``run_masterd``."""

from __future__ import annotations

import pytest

BACKENDS = ["sqlite", "postgres"]


def store_args(request: pytest.FixtureRequest) -> list[str]:
    """``--store`` for the backend of ``request.param``: PostgreSQL a new database on the
    worker's server (skipped without one, failed under CI=true); SQLite the default file."""
    if request.param == "postgres":
        return ["--store", str(request.getfixturevalue("postgres_url"))]
    return []
