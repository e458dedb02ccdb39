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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.context import AppContext
from bot.services.dispatch.dispatcher import DispatchService
from bot.settings import load_settings
from bot.web.app import create_app
from bot.wiring import Services
from store.database import EmbeddedPostgres, connect, create_pool, with_database
from store.events import EventStore
from store.migrations import migrate
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


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_context(
    database_url: str, pool: asyncpg.Pool, http_session: aiohttp.ClientSession
) -> Callable[..., AppContext]:
    """Build an AppContext on this test's database from an environment dict."""

    def build(env: dict[str, str] | None = None, **kwargs: Any) -> AppContext:
        settings = load_settings({"CONDUCTOR_DATA_DIR": "/nonexistent", **(env or {})})
        return AppContext.build(settings, database_url, pool, http_session, **kwargs)

    return build


@pytest.fixture
def context(make_context: Callable[..., AppContext]) -> AppContext:
    return make_context()


@pytest.fixture
async def api_client_factory() -> AsyncIterator[Callable[..., Awaitable[TestClient]]]:
    """Serve the real API application for a context (and its push dispatcher, if any) on
    127.0.0.1; closed after the test."""
    clients: list[TestClient] = []

    async def start(ctx: AppContext, *, dispatch: DispatchService | None = None) -> TestClient:
        app = create_app(Services.build(ctx, dispatch=dispatch))
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def api(context: AppContext) -> AsyncIterator[TestClient]:
    """The API over the default context (no tokens)."""
    async with TestClient(
        TestServer(create_app(Services.build(context)), host="127.0.0.1")
    ) as client:
        yield client
