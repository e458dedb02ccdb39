"""PostgreSQL stopped for 10 s under steady API load: refused, never acknowledged and lost.

The real `conductor-e api` process runs against its own embedded PostgreSQL, which the test
stops and starts again while writers keep posting. Every write that got a 2xx must be in the
store afterwards; writes during the outage must be refused with a 5xx; deep health must turn
503 and back, and the API must recover without a restart.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from store.database import EmbeddedPostgres, connect
from store.migrations import migrate
from tests.test_cli import free_port
from tests.waiting import wait_until

OUTAGE_SECONDS = 10.0
WRITERS = 5


@pytest.fixture
async def database() -> tuple[EmbeddedPostgres, str]:
    root = Path(tempfile.mkdtemp(prefix="conductor-e-outage-"))
    os.chmod(root, 0o755)
    server = EmbeddedPostgres(root)
    dsn = await server.start()
    conn = await connect(dsn)
    await migrate(conn)
    await conn.close()
    yield server, dsn
    await server.stop()
    server.destroy()


@pytest.mark.slow
async def test_writes_during_an_outage_are_refused_and_none_acknowledged_is_lost(
    database: tuple[EmbeddedPostgres, str], tmp_path: Path
) -> None:
    server, dsn = database
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")},
        "DATABASE_URL": dsn,
        "CONDUCTOR_HTTP_HOST": "127.0.0.1",
        "CONDUCTOR_HTTP_PORT": str(port),
    }
    # The log goes to a file: a pipe nobody reads during the test would fill and block the API.
    log_file = tmp_path / "api.log"
    with log_file.open("w") as log_handle:
        api = subprocess.Popen(
            [sys.executable, "-m", "bot", "api"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_handle,
        )
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    refused: list[int] = []
    during_outage: list[int] = []
    health_seen: list[int] = []
    outage = asyncio.Event()
    stop = asyncio.Event()
    markers = itertools.count()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        await wait_until(
            lambda: status(http, f"{base}/health"),
            ok=lambda code: code == 200,
            timeout=60,
            what="/health to answer 200",
            interval=0.1,
        )

        async def writer(i: int) -> None:
            while not stop.is_set():
                marker = f"w{i}-{next(markers)}"
                body = {"type": "HEARTBEAT", "agentId": f"load-{i}", "status": marker}
                try:
                    async with http.post(f"{base}/api/events", json=body) as response:
                        await response.read()
                        code = response.status
                except aiohttp.ClientError:
                    code = 599  # no answer at all: not acknowledged either
                if 200 <= code < 300:
                    acknowledged.append(marker)
                else:
                    assert code >= 500, f"a write got {code}"
                    refused.append(code)
                if outage.is_set():
                    during_outage.append(code)
                await asyncio.sleep(0.01)

        async def watch_health() -> None:
            while not stop.is_set():
                health_seen.append(await status(http, f"{base}/healthz/deep"))
                await asyncio.sleep(0.2)

        tasks = [asyncio.create_task(writer(i)) for i in range(WRITERS)]
        tasks.append(asyncio.create_task(watch_health()))
        try:
            await wait_until(
                lambda: len(acknowledged) >= 50, timeout=30, what="50 writes acknowledged"
            )
            await server.stop()
            outage.set()
            await asyncio.sleep(OUTAGE_SECONDS)
            outage.clear()
            await server.start()
            before = len(acknowledged)
            # Recovery without a restart: writes and deep health succeed again.
            await wait_until(
                lambda: len(acknowledged) >= before + 50,
                timeout=60,
                what="50 more writes acknowledged after the outage",
            )
            await wait_until(
                lambda: status(http, f"{base}/healthz/deep"),
                ok=lambda code: code == 200,
                timeout=30,
                what="/healthz/deep to answer 200 again",
                interval=0.1,
            )
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    api.send_signal(signal.SIGTERM)
    assert api.wait(timeout=30) == 0, log_file.read_text()[-2000:]
    # One warning per interval during the outage, not one per refused request.
    warnings = log_file.read_text().count("request failed: PostgreSQL is unavailable")
    assert 1 <= warnings <= OUTAGE_SECONDS / 10 + 3, warnings

    assert during_outage and all(code >= 500 for code in during_outage)
    assert 503 in health_seen and health_seen[-1] == 200
    conn = await asyncpg.connect(dsn)
    try:
        stored = {
            row["status"]
            for row in await conn.fetch(
                "SELECT data->>'status' AS status FROM events WHERE type = 'HEARTBEAT'"
            )
        }
    finally:
        await conn.close()
    lost = [marker for marker in acknowledged if marker not in stored]
    assert lost == []
    print(
        f"\noutage {OUTAGE_SECONDS:.0f}s: {len(acknowledged)} writes acknowledged (all stored), "
        f"{len(refused)} refused with 5xx, {len(during_outage)} attempted during the outage"
    )


async def status(http: aiohttp.ClientSession, url: str) -> int:
    try:
        async with http.get(url) as response:
            await response.read()
            return response.status
    except aiohttp.ClientError:
        return 599
