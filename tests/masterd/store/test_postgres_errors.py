"""Every error asyncpg or the socket raises under the PostgreSQL store becomes one of the
wire's (the one mapping point, ``masterd.store.postgres._mapped``), as httpx tests its
transport errors; and a URL's password never reaches a log."""

from __future__ import annotations

import asyncpg
import pytest

from masterd.store.postgres import _mapped, without_password
from masterd.store.postgres_sql import CONNECTION_LOST
from rpc_client.errors import InsufficientStorage, StoreUnavailable

URL = "postgresql://masterd@db:5432/masterd"


@pytest.mark.parametrize(
    "error",
    [ConnectionRefusedError(111, "refused"), TimeoutError(), OSError("no route"),
     asyncpg.ConnectionDoesNotExistError("gone"), asyncpg.CannotConnectNowError("starting"),
     asyncpg.AdminShutdownError("shutdown"), asyncpg.InterfaceError("closed"),
     asyncpg.exceptions.InternalClientError("state"), asyncpg.ReadOnlySQLTransactionError("ro")],
)  # fmt: skip
def test_a_lost_or_refused_store_is_503_with_retry_after(error: BaseException) -> None:
    mapped = _mapped(error, URL)
    assert isinstance(mapped, StoreUnavailable) and mapped.retry_after_s == 1
    assert URL in mapped.message


def test_a_full_disk_is_507() -> None:
    assert isinstance(_mapped(asyncpg.DiskFullError("full"), URL), InsufficientStorage)


def test_every_connection_error_class_is_caught() -> None:
    for error in (ConnectionResetError(), asyncpg.ConnectionDoesNotExistError("x"),
                  asyncpg.exceptions.InternalClientError("x")):  # fmt: skip
        assert isinstance(error, CONNECTION_LOST)


def test_the_password_is_left_out_of_the_url_shown() -> None:
    shown = without_password("postgresql://masterd:s3cret@db:5432/masterd?sslmode=require")
    assert shown == "postgresql://masterd@db:5432/masterd?sslmode=require"
    assert without_password(URL) == URL
