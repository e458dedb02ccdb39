"""Sustained mixed API traffic against the real `python -m bot api` process.

Concurrent clients, each in a loop, do what the agents do: post HEARTBEAT and TOKEN_USAGE
(the exact bodies the agent runtime sends), claim work with GET /api/assignments/next, and
read GET /api/queue. The API runs on its own embedded PostgreSQL, seeded with queued issues
so claims keep succeeding. Afterwards: zero errors, and every claim exclusive — no issue has
two ISSUE_ASSIGNED events, and every 200 from a claim names an issue nobody else got.

`test_sustained_load` (marked `load`) runs LOAD_SECONDS (60) with LOAD_CLIENTS (50) clients over
LOAD_ISSUES (60,000) seeded issues, twice: first each client sends its next request as soon as
the last is answered (the API at saturation: its throughput), then the same clients send at a
fixed total rate, LOAD_RATE (1,050 requests/s), each request timed from when it was due, not
when it went out, so a stall counts in full for every request it delays. The second run is the
latency: with clients that wait for their answers, latency is only clients / throughput
(Little's law: 50 clients at 1,050 req/s queue for 48 ms on average, whatever the server does),
so p99 at a given rate needs requests that arrive at that rate;
`test_short_mixed_load` runs in the normal suite with LOAD_SHORT_SECONDS (8) and
LOAD_SHORT_CLIENTS (20). Both print throughput and p50/p99 latency per operation.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from store.database import EmbeddedPostgres, connect
from store.migrations import migrate
from tests.lean_http import HttpError, LeanHttp
from tests.test_cli import free_port
from tests.waiting import wait_until

REPO = "load/app"
JSON = "application/json"
OPERATIONS = ("heartbeat", "token_usage", "claim", "queue")


def env_int(name: str, default: int) -> int:
    """An integer override from the environment, with a clear message when it is not one."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AssertionError(f"{name} must be a whole number, got {raw!r}") from None
    assert value > 0, f"{name} must be positive, got {value}"
    return value


@dataclass
class Api:
    base: str
    dsn: str
    log: Path


@dataclass
class Figures:
    """What the clients saw: latencies per operation, errors, and each claim's answer."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    errors: list[str] = field(default_factory=list)
    claimed: list[str] = field(default_factory=list)
    empty_claims: int = 0
    elapsed: float = 0.0
    rate: int | None = None  # the requests/s offered; None: as fast as answered


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The real API process on its own embedded PostgreSQL; stopped with SIGTERM after."""
    root = Path(tempfile.mkdtemp(prefix="conductor-e-load-"))
    os.chmod(root, 0o755)  # the embedded server runs as its own user when we are root
    server = EmbeddedPostgres(root)
    dsn = await server.start()
    try:
        conn = await connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")},
            "DATABASE_URL": dsn,
            "CONDUCTOR_HTTP_HOST": "127.0.0.1",
            "CONDUCTOR_HTTP_PORT": str(port),
            "CONDUCTOR_LOG_LEVEL": "WARNING",
        }
        log = tmp_path / "api.log"
        # A file, not a pipe: a pipe nobody reads during the test would fill and block the API.
        with log.open("w") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "bot", "api"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=handle,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_healthy(base, process, log)
            yield Api(base, dsn, log)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError("the API did not stop within 30 s of SIGTERM") from None
            assert code == 0, log.read_text()[-2000:]
    finally:
        await server.stop()
        server.destroy()


async def wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession() as http:

        async def health() -> int | None:
            if process.poll() is not None:
                raise AssertionError(f"the API exited: {log.read_text()[-2000:]}")
            try:
                async with http.get(f"{base}/health") as response:
                    return response.status
            except aiohttp.ClientError:
                return None

        await wait_until(
            health,
            ok=lambda status: status == 200,
            timeout=60,
            what="the API to answer /health",
            interval=0.1,
        )


async def seed_queue(dsn: str, count: int, first: int = 1) -> None:
    """`count` queued issues (numbered from `first`), appended through the store's own append
    function."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            SELECT conductor_append(
                $1 || '#' || n, 0, NULL, ARRAY['ISSUE_APPROVED'],
                ARRAY[jsonb_build_object('repo', $1::text, 'issueNumber', n,
                                         'title', 'Load issue ' || n, 'labels', '[]'::jsonb,
                                         'priority', 'normal')],
                ARRAY['{"actor": "load-seed"}'::jsonb])
            FROM generate_series($3::int, $3::int + $2::int - 1) AS n
            """,
            REPO,
            count,
            first,
        )
    finally:
        await conn.close()


async def count_queued(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM issues WHERE state = 'queued'"))
    finally:
        await conn.close()


def heartbeat(agent: str) -> str:
    """The HEARTBEAT body the agent runtime sends today."""
    return json.dumps(
        {
            "type": "HEARTBEAT",
            "agentId": agent,
            "status": "working",
            "currentIssue": 12,
            "currentRepo": REPO,
            "activeProvider": None,
            "availableProviders": [],
            "providers": [],
            "integrations": [],
        }
    )


def token_usage(agent: str) -> str:
    """The TOKEN_USAGE body the agent runtime sends today."""
    return json.dumps(
        {
            "type": "TOKEN_USAGE",
            "agentId": agent,
            "repo": REPO,
            "issueNumber": 12,
            "model": "claude-haiku-4-5",
            "inputTokens": 1200,
            "outputTokens": 300,
            "costUsd": 0.0027,
        }
    )


async def client(
    base: str,
    index: int,
    stop: asyncio.Event,
    figures: Figures,
    interval: float | None = None,
    offset: float = 0.0,
) -> None:
    """One agent-like client on its own keep-alive connection: heartbeat, usage, claim, queue
    read, round and round.

    With `interval`, its requests are due every `interval` seconds (staggered by `index`) and
    each is timed from when it was due (the first `offset` seconds from now); without, each
    goes as soon as the last is answered."""
    agent = f"load-agent-{index}"
    http = LeanHttp(base)
    requests = {
        "heartbeat": http.encode("POST", "/api/events", heartbeat(agent).encode(), JSON),
        "token_usage": http.encode("POST", "/api/events", token_usage(agent).encode(), JSON),
        "claim": http.encode("GET", f"/api/assignments/next?agentId={agent}"),
        "queue": http.encode("GET", "/api/queue"),
    }
    due = time.perf_counter() + offset
    try:
        while not stop.is_set():
            for op in OPERATIONS:
                if stop.is_set():
                    return
                if interval is None:
                    started = time.perf_counter()
                else:
                    started = due
                    due += interval
                    await asyncio.sleep(max(0.0, started - time.perf_counter()))
                try:
                    status, body = await http.send(requests[op])
                except (HttpError, TimeoutError) as exc:
                    figures.errors.append(f"{op}: {type(exc).__name__}: {exc}")
                    continue
                figures.latencies[op].append(time.perf_counter() - started)
                if op == "claim" and status == 204:
                    figures.empty_claims += 1
                elif status != 200:
                    figures.errors.append(f"{op}: HTTP {status}: {body[:200]!r}")
                elif op == "claim":
                    figures.claimed.append(json.loads(body)["streamId"])
    finally:
        await http.close()


async def run_load(
    api: Api, *, seconds: int, clients: int, seed: int, rate: int | None = None
) -> Figures:
    """`clients` clients for `seconds`: as fast as answered, or at `rate` requests/s in all."""
    if seed:
        await seed_queue(api.dsn, seed)
    interval = clients / rate if rate else None
    figures = Figures(rate=rate)
    # This process's own collector pauses (a full collection of pytest's objects takes ~40 ms)
    # would count against the API in every request they delay: frozen out of its sight for
    # the run (and thawed after, so the rest of the suite's garbage is still collected).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(client(api.base, i, stop, figures, interval, i / rate if rate else 0.0))
        for i in range(clients)
    ]
    try:
        done, _ = await asyncio.wait(tasks, timeout=seconds)
        # A client that ended early raised: that is a bug in the test, surface it.
        for task in done:
            task.result()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        gc.unfreeze()
    figures.elapsed = time.perf_counter() - started
    return figures


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(figures: Figures, clients: int) -> str:
    total = sum(len(v) for v in figures.latencies.values())
    pace = f"at {figures.rate:,} req/s offered" if figures.rate else "as fast as answered"
    lines = [
        f"\nload: {clients} clients {pace} for {figures.elapsed:.1f}s: {total} requests, "
        f"{total / figures.elapsed:.0f} req/s, {len(figures.errors)} errors, "
        f"{len(figures.claimed)} claims (+{figures.empty_claims} empty)"
    ]
    for op, values in figures.latencies.items():
        if values:
            lines.append(
                f"  {op:<12} {len(values):>7} req {len(values) / figures.elapsed:>7.0f}/s  "
                f"p50 {percentile(values, 0.5) * 1000:7.1f} ms  "
                f"p99 {percentile(values, 0.99) * 1000:7.1f} ms"
            )
    return "\n".join(lines)


async def check(
    api: Api, figures: Figures, clients: int, *, earlier: Figures | None = None
) -> None:
    """No errors, every claim exclusive, every acknowledged append stored: over this run and
    the `earlier` one on the same store."""
    print(report(figures, clients))
    assert figures.errors == [], figures.errors[:10]
    assert all(figures.latencies[op] for op in OPERATIONS), "an operation never completed"
    assert figures.claimed, "no claim succeeded"
    # Exclusive from the clients' side: no issue was handed to two of them.
    runs = [figures] if earlier is None else [earlier, figures]
    claimed = [stream for run in runs for stream in run.claimed]
    handed = Counter(claimed)
    assert [stream for stream, n in handed.items() if n > 1] == []
    # And from the store's: one ISSUE_ASSIGNED per issue, exactly the ones handed out.
    conn = await asyncpg.connect(api.dsn)
    try:
        rows = await conn.fetch(
            "SELECT stream_id, count(*) AS n FROM events WHERE type = 'ISSUE_ASSIGNED' "
            "GROUP BY stream_id"
        )
        appended = await conn.fetchval(
            "SELECT count(*) FROM events WHERE type IN ('HEARTBEAT', 'TOKEN_USAGE')"
        )
    finally:
        await conn.close()
    assert [row["stream_id"] for row in rows if row["n"] > 1] == []
    assert {row["stream_id"] for row in rows} == set(claimed)
    # Every acknowledged append is stored.
    assert appended == sum(
        len(run.latencies["heartbeat"]) + len(run.latencies["token_usage"]) for run in runs
    )
    print(f"  exclusive: {len(rows)} issues with exactly one ISSUE_ASSIGNED; {appended} appends")


@pytest.mark.load
async def test_sustained_load(api: Api) -> None:
    seconds = env_int("LOAD_SECONDS", 60)
    clients = env_int("LOAD_CLIENTS", 50)
    # More issues than the clients can claim, so claims succeed for both runs.
    saturated = await run_load(
        api, seconds=seconds, clients=clients, seed=env_int("LOAD_ISSUES", 60_000)
    )
    await check(api, saturated, clients)
    # Enough queued issues for every claim of the paced run, whatever the first one took:
    # an empty claim is cheaper than one that assigns, and would flatter the figures.
    rate = env_int("LOAD_RATE", 1_050)
    claims = rate * seconds // len(OPERATIONS)
    queued = await count_queued(api.dsn)
    if queued < claims * 5 // 4:
        await seed_queue(api.dsn, claims * 5 // 4 - queued, first=1_000_000)
    paced = await run_load(api, seconds=seconds, clients=clients, seed=0, rate=rate)
    await check(api, paced, clients, earlier=saturated)


@pytest.mark.slow
async def test_short_mixed_load(api: Api) -> None:
    seconds = env_int("LOAD_SHORT_SECONDS", 8)
    clients = env_int("LOAD_SHORT_CLIENTS", 20)
    # Fewer issues than claims: the queue runs dry, so 204s under contention are covered too.
    figures = await run_load(api, seconds=seconds, clients=clients, seed=300)
    await check(api, figures, clients)
    assert figures.empty_claims > 0, "the queue never ran dry; seed fewer issues"
