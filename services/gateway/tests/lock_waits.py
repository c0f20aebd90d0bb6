"""Waiting until a query of the gateway is blocked on a lock the test holds, instead of sleeping."""

import asyncio
import time

import psycopg

WAIT_SECONDS = 10.0
POLL_SECONDS = 0.02
_WAITERS = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE %s"


def _waiting(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute(_WAITERS, (f"%{table}%",)).fetchone()
    return bool(row and row[0] > 0)


def wait_for_lock_waiter_sync(dsn: str, table: str = "gateway.usage_events") -> None:
    """Returns once a session waits on a lock while running a query on `table`; fails after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not _waiting(conn, table):
            if time.monotonic() > deadline:
                raise AssertionError(f"no query on {table} waited on the lock within {WAIT_SECONDS} s")
            time.sleep(POLL_SECONDS)


async def wait_for_lock_waiter(dsn: str, table: str = "gateway.usage_events") -> None:
    """The same, for a test whose event loop runs the gateway: it keeps serving while this polls."""
    deadline = time.monotonic() + WAIT_SECONDS
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not _waiting(conn, table):
            if time.monotonic() > deadline:
                raise AssertionError(f"no query on {table} waited on the lock within {WAIT_SECONDS} s")
            await asyncio.sleep(POLL_SECONDS)
