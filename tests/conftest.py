"""Shared fixtures: a real PostgreSQL for every test that touches the store.

One embedded server per test session (or the server in DATABASE_URL). A template database is
migrated once; each test gets its own database cloned from it, so tests never see each other's
events and need no clean-up between them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from store.database import EmbeddedPostgres, connect, create_pool, migrate, with_database
from store.events import EventStore
from store.projections import Projections

TEMPLATE_DB = "conductor_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL server the tests may create databases on."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    root = Path(tempfile.mkdtemp(prefix="conductor-e-test-"))
    os.chmod(root, 0o755)  # the embedded server runs as its own user when we are root
    server = EmbeddedPostgres(root)
    dsn = asyncio.run(server.start())
    try:
        yield dsn
    finally:
        asyncio.run(server.stop())
        server.destroy()


@pytest.fixture(scope="session")
def template_dsn(pg_server_dsn: str) -> str:
    """A database migrated once per session, cloned by `database_url`."""

    async def prepare() -> None:
        admin = await asyncpg.connect(pg_server_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        finally:
            await admin.close()
        conn = await connect(with_database(pg_server_dsn, TEMPLATE_DB))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(prepare())
    return with_database(pg_server_dsn, TEMPLATE_DB)


async def create_test_database(server_dsn: str) -> str:
    """A fresh, migrated database; returns its DSN."""
    name = f"t_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await admin.close()
    return with_database(server_dsn, name)


async def drop_test_database(server_dsn: str, dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def database_url(pg_server_dsn: str, template_dsn: str) -> AsyncIterator[str]:
    """DSN of a fresh, migrated database of this test's own."""
    dsn = await create_test_database(pg_server_dsn)
    yield dsn
    await drop_test_database(pg_server_dsn, dsn)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=20)
    yield pool
    await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> EventStore:
    return EventStore(pool)


@pytest.fixture
def projections(pool: asyncpg.Pool) -> Projections:
    return Projections(pool)
