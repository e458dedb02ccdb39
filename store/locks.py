"""Session-level advisory locks: one holder at a time across every process and pod.

`try_run_lock` takes one connection from the pool and keeps it for as long as the lock is held:
a session-level advisory lock belongs to the connection that took it, so handing that
connection back to the pool mid-run would hand the lock to whoever borrows it next.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Iterator

import asyncpg

from store.errors import unavailable_on_connection_loss

log = logging.getLogger(__name__)

# The keys of the advisory locks Conductor-E takes, each named once: every process and pod
# must agree on them. (The SQL functions take APPEND_LOCK as conductor_append_lock().)
MIGRATION_LOCK = 7166001  # one migrator at a time (store.database.migrate)
APPEND_LOCK = 7166002  # appends and claims commit one at a time, in position order; rebuilds
COORDINATION_RUN_LOCK = 7166003  # one coordination run at a time
DISPATCH_LEADER_LOCK = 7166004  # one push dispatcher across the API replicas


@contextlib.asynccontextmanager
async def _lock_connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pool connection of its own for a session lock, given back to the pool afterwards."""
    with unavailable_on_connection_loss():
        conn = await pool.acquire()
    try:
        yield conn
    finally:
        try:
            await pool.release(conn)
        except Exception as exc:
            # The pool has already closed a connection it could not reset; nothing is held.
            log.warning("could not return the lock connection to the pool (%s)", type(exc).__name__)


@contextlib.asynccontextmanager
async def try_run_lock(pool: asyncpg.Pool, key: int) -> AsyncIterator[bool]:
    """Try to take advisory lock `key` without waiting; yield whether it was taken.

    The lock is held on a dedicated connection until the block ends, then released before the
    connection goes back to the pool. If the connection is lost mid-block the server drops the
    lock with the session, so a crashed holder never blocks the next run. Raises
    DatabaseUnavailableError when PostgreSQL cannot be reached to try.
    """
    async with _lock_connection(pool) as conn:
        with unavailable_on_connection_loss(), closed_when_in_doubt(conn):
            taken = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
        try:
            yield taken
        finally:
            if taken:
                await unlock(conn, key)


def named_lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for a name (e.g. one PR), stable across processes."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


@contextlib.asynccontextmanager
async def hold_lock(pool: asyncpg.Pool, key: int) -> AsyncIterator[None]:
    """Wait for advisory lock `key` and hold it for the block (on its own connection).

    Holders queue: each runs after the one before has finished, in every process. A crashed
    holder's session ends and the server releases its lock.
    """
    async with _lock_connection(pool) as conn:
        with unavailable_on_connection_loss(), closed_when_in_doubt(conn):
            await conn.execute("SELECT pg_advisory_lock($1)", key)
        try:
            yield
        finally:
            await unlock(conn, key)


@contextlib.contextmanager
def closed_when_in_doubt(conn: asyncpg.Connection) -> Iterator[None]:
    """A lock query that failed or was cancelled may have taken the lock all the same: close
    the connection (the server drops its locks) rather than hand it back to the pool, whose
    release does not unlock (see store.database)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            conn.terminate()
        raise


async def unlock(conn: asyncpg.Connection, key: int) -> None:
    """Release session-level advisory lock `key` before its connection goes back to the pool;
    when that fails, close the connection, which releases it too."""
    try:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)
    except Exception as exc:
        # The session is gone (the server dropped it, and the lock with it) or in doubt. A
        # connection that may still hold the lock must not be reused: close it, and the
        # server releases every lock of the session.
        log.warning(
            "could not release advisory lock %d (%s); closing its connection",
            key,
            type(exc).__name__,
        )
        with contextlib.suppress(Exception):
            conn.terminate()
