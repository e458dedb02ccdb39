"""Crash safety: a killed writer, a killed connection, a killed server — all or nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from store.database import EmbeddedPostgres, connect
from store.migrations import migrate
from store.projections import projection_snapshot, rebuild_projections
from tests.waiting import wait_until

WRITER = Path(__file__).with_name("append_writer.py")
BATCH = 40


async def fetchval(dsn: str, query: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


WRITER_BACKENDS = (
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND application_name = 'conductor-e'"
)


async def wait_for_events(dsn: str, at_least: int, timeout: float = 30) -> None:
    await wait_until(
        lambda: fetchval(dsn, "SELECT count(*) FROM events"),
        ok=lambda count: count >= at_least,
        timeout=timeout,
        what=f"{at_least} events written",
        interval=0.05,
    )


async def writer_backends_gone(dsn: str, timeout: float = 20) -> None:
    """A killed client's backend may still finish the append it was running; wait for it."""
    await wait_until(
        lambda: fetchval(dsn, f"SELECT count(*) {WRITER_BACKENDS}"),
        ok=lambda left: left == 0,
        timeout=timeout,
        what="the writer's backends gone",
        interval=0.05,
    )


async def assert_all_or_nothing(dsn: str) -> int:
    """Every stream holds a whole batch, and the projections match a replay of the events."""
    await writer_backends_gone(dsn)
    conn = await connect(dsn)
    try:
        sizes = await conn.fetch(
            "SELECT stream_id, count(*) AS n, max(version) AS v FROM events GROUP BY stream_id"
        )
        assert sizes, "the writer appended nothing before it was killed"
        for row in sizes:
            assert row["n"] == BATCH == row["v"], f"{row['stream_id']} holds a partial append"
        issues = await conn.fetchval("SELECT count(*) FROM issues")
        assert issues == len(sizes)
        live = await projection_snapshot(conn)
        await rebuild_projections(conn)
        assert await projection_snapshot(conn) == live
        return len(sizes)
    finally:
        await conn.close()


def start_writer(dsn: str) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, str(WRITER), dsn, str(BATCH)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stderr=subprocess.DEVNULL,
    )


async def test_a_writer_killed_mid_append_leaves_whole_appends_only(database_url: str) -> None:
    writer = start_writer(database_url)
    try:
        await wait_for_events(database_url, BATCH * 20)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    await assert_all_or_nothing(database_url)


async def test_a_connection_killed_mid_append_stores_nothing_of_it(database_url: str) -> None:
    writer = start_writer(database_url)
    try:
        await wait_for_events(database_url, BATCH * 5)

        async def terminated() -> bool:
            # Terminate the writer's backend, most likely inside conductor_append: the writer
            # dies of it. Caught between two appends, its pool just reconnects, so again.
            await fetchval(
                database_url, f"SELECT count(pg_terminate_backend(pid)) {WRITER_BACKENDS}"
            )
            return writer.poll() is not None

        await wait_until(
            terminated, timeout=30, what="the writer ended by its lost connection", interval=0.2
        )
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    await assert_all_or_nothing(database_url)


@pytest.mark.slow
async def test_a_server_killed_mid_append_recovers_whole_appends_only() -> None:
    """SIGKILL the PostgreSQL server itself under load, restart it, and check."""
    root = Path(tempfile.mkdtemp(prefix="conductor-e-crash-"))
    os.chmod(root, 0o755)
    server = EmbeddedPostgres(root)
    dsn = await server.start()
    try:
        conn = await connect(dsn)
        await migrate(conn)
        await conn.close()
        writer = start_writer(dsn)
        try:
            await wait_for_events(dsn, BATCH * 20)
            pid = int((server.pgdata / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            writer.wait(timeout=30)
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
        # The server's children notice the dead postmaster and exit; then start it again,
        # which runs crash recovery from the WAL.
        await asyncio.sleep(0)
        await _wait_until_stopped(server.pgdata)
        await server.stop()
        dsn = await server.start()
        await assert_all_or_nothing(dsn)
    finally:
        await server.stop()
        server.destroy()


async def _wait_until_stopped(pgdata: Path, timeout: float = 20) -> None:
    import psutil

    async def poll() -> None:
        while any(
            p.info["cmdline"] and str(pgdata) in " ".join(p.info["cmdline"])
            for p in psutil.process_iter(attrs=["cmdline"])
        ):
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), timeout)
