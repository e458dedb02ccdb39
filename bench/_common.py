"""What the benchmarks share: a fresh, migrated PostgreSQL database.

Imported by the scripts as `bench._common`, after they put the repository root on sys.path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from store.database import EmbeddedPostgres, connect, env_database_url, migrate, with_database


@contextlib.asynccontextmanager
async def fresh_database(prefix: str) -> AsyncIterator[str]:
    """Yield the DSN of a new database `bench_<prefix>_<random>`, migrated; drop it afterwards.

    The database is created on the server in DATABASE_URL if that is set, otherwise on an
    embedded PostgreSQL in a temporary directory, which is stopped and removed afterwards.
    `prefix` is a lower-case word naming the benchmark (it becomes part of the database name).
    """
    server_dsn = env_database_url()
    embedded: EmbeddedPostgres | None = None
    try:
        if server_dsn is None:
            root = Path(tempfile.mkdtemp(prefix=f"conductor-e-bench-{prefix}-"))
            os.chmod(root, 0o755)  # the embedded server runs as its own user when we are root
            embedded = EmbeddedPostgres(root)
            server_dsn = await embedded.start()
        name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
        await _admin(server_dsn, f"CREATE DATABASE {name}")
        try:
            dsn = with_database(server_dsn, name)
            conn = await connect(dsn)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            yield dsn
        finally:
            await _admin(server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        if embedded is not None:
            await embedded.stop()
            shutil.rmtree(embedded.data_dir, ignore_errors=True)


async def _admin(server_dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
