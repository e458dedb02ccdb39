"""What the benchmarks share: a fresh, migrated PostgreSQL database, a `conductor-e bot`
process against the fake Discord, and the percentile they report.

Imported by the scripts as `bench._common`, after they put the repository root on sys.path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from store.database import EmbeddedPostgres, connect, env_database_url, with_database
from store.migrations import migrate

if TYPE_CHECKING:
    from tests.fakes.discord import FakeDiscord

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    """The value at fraction `q` of the sorted samples (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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


@contextlib.asynccontextmanager
async def bot_process(
    dsn: str, fake: FakeDiscord, command: str
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A real `conductor-e bot` on `dsn` and the fake Discord, yielded once it has synced
    `command`; terminated (killed if it will not stop) afterwards."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "DISCORD_BOT_TOKEN": fake.token,
        "CONDUCTOR_DISCORD_API_URL": fake.api_url,
        "CONDUCTOR_GUILD_ID": str(fake.guild_id),
        "CONDUCTOR_DATA_DIR": "/nonexistent",
        "CONDUCTOR_LOG_LEVEL": "WARNING",
        "CONDUCTOR_LOOP_ENABLED": "false",
    }
    process = subprocess.Popen([sys.executable, "-m", "bot", "bot"], env=env, cwd=ROOT)
    try:
        await fake.wait_for(lambda: fake.connected and command in fake.commands, timeout=60)
        yield process
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        if process.returncode is None:
            process.kill()
