"""Dashboard benchmark: latency of the page's data endpoints with 10,000 issues.

Run by hand (`python bench/dashboard.py`), not as a test. Starts an embedded PostgreSQL (or uses
DATABASE_URL: a fresh database is created on it), loads the issues through the real append
function (`conductor_append` in a generate_series, as bench/event_store.py does), spreads them
over every board column, adds agents, 30 days of spend and coordination runs, then serves the
API with the dashboard on 127.0.0.1 and times each endpoint over HTTP, one request at a time.

Target: every endpoint p50 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import fresh_database, percentile  # noqa: E402
from bot.context import AppContext  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.web import dashboard  # noqa: E402
from bot.web.app import create_app  # noqa: E402
from bot.wiring import Services  # noqa: E402
from store.database import connect, create_pool  # noqa: E402

REPO = "bench/board"
# How the issues are spread over the columns (the rest stay queued).
SPREAD = {
    "assigned": ["ISSUE_ASSIGNED"],
    "in_progress": ["ISSUE_ASSIGNED", "WORK_STARTED"],
    "in_review": ["ISSUE_ASSIGNED", "WORK_STARTED", "PR_CREATED", "REVIEW_ASSIGNED"],
    "deploying": ["ISSUE_ASSIGNED", "MERGED", "DEPLOYED_STAGING"],
    "done": ["ISSUE_ASSIGNED", "MERGED", "ISSUE_DONE"],
    "failed": ["ISSUE_ASSIGNED", "ESCALATED"],
}
ENDPOINTS = [
    "/dashboard/api/board",
    "/dashboard/api/board?state=queued&offset=5000&limit=50",
    "/dashboard/api/board?state=in_progress&offset=250&limit=50",
    "/dashboard/api/agents",
    "/dashboard/api/spend",
    "/dashboard/api/runs",
    "/dashboard/api/health",
]


async def load(dsn: str, issues: int, per_state: int, agents: int) -> None:
    conn = await connect(dsn)
    try:
        started = time.perf_counter()
        step = 2_000
        for first in range(1, issues + 1, step):
            await conn.execute(
                """
                SELECT conductor_append($1 || '#' || i, 0, NULL, ARRAY['ISSUE_APPROVED'],
                       ARRAY[jsonb_build_object('repo', $1::text, 'issueNumber', i,
                             'title', 'benchmark issue number ' || i,
                             'priority', (ARRAY['critical','high','normal','normal'])[i % 4 + 1])],
                       ARRAY['{}'::jsonb])
                FROM generate_series($2::int, $3::int) AS i
                """,
                REPO,
                first,
                min(first + step - 1, issues),
            )
        first = 1
        for types in SPREAD.values():
            await conn.execute(
                """
                SELECT conductor_append($1 || '#' || i, NULL, NULL, $4::text[],
                       array_fill(jsonb_build_object('repo', $1::text, 'issueNumber', i,
                                  'agentId', 'dev-e-' || (i % $5), 'prNumber', i,
                                  'reason', 'benchmark'), ARRAY[cardinality($4::text[])]),
                       array_fill('{}'::jsonb, ARRAY[cardinality($4::text[])]))
                FROM generate_series($2::int, $3::int) AS i
                """,
                REPO,
                first,
                first + per_state - 1,
                types,
                agents,
            )
            first += per_state
        await conn.execute(
            """
            SELECT conductor_append('dev-e-' || a, NULL, NULL, ARRAY['HEARTBEAT'],
                   ARRAY[jsonb_build_object('agentId', 'dev-e-' || a, 'status', 'working')],
                   ARRAY['{}'::jsonb])
            FROM generate_series(0, $1::int - 1) AS a
            """,
            agents,
        )
        # 30 days of spend: TOKEN_USAGE rows with past recorded_at, projected as appends do.
        await conn.execute(
            """
            WITH inserted AS (
                INSERT INTO events (stream_id, version, type, data, recorded_at)
                SELECT 'dev-e-' || a, 1000 + d, 'TOKEN_USAGE',
                       jsonb_build_object('agentId', 'dev-e-' || a, 'model', 'claude-haiku-4-5',
                                          'inputTokens', 1000, 'outputTokens', 100,
                                          'costUsd', 0.5 + a * 0.01),
                       now() - make_interval(days => d)
                FROM generate_series(0, $1::int - 1) AS a, generate_series(1, 29) AS d
                RETURNING position
            )
            SELECT count(conductor_project(e)) FROM events e
            WHERE e.position IN (SELECT position FROM inserted)
            """,
            agents,
        )
        await conn.execute(
            """
            SELECT conductor_append('conductor-e:coordination', NULL, NULL,
                   ARRAY['COORDINATION_RUN_COMPLETED'],
                   ARRAY[jsonb_build_object('durationMs', 1000 + r, 'approved',
                         jsonb_build_array('a/b#1'), 'appended', r)],
                   ARRAY['{}'::jsonb])
            FROM generate_series(1, 50) AS r
            """
        )
        await conn.execute("ANALYZE")
        counts = await conn.fetch(
            "SELECT state, count(*) AS n FROM issues GROUP BY state ORDER BY state"
        )
        shown = ", ".join(f"{r['state']} {r['n']:,}" for r in counts)
        print(
            f"loaded {issues:,} issues ({shown}) in {time.perf_counter() - started:.1f}s",
            file=sys.stderr,
        )
    finally:
        await conn.close()


async def measure(base: str, runs: int, paths: list[str]) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {path: [] for path in paths}
    async with aiohttp.ClientSession(base) as session:
        for path in paths:  # warm up
            async with session.get(path) as response:
                assert response.status == 200, (path, await response.text())
        for _ in range(runs):
            for path in paths:
                started = time.perf_counter()
                async with session.get(path) as response:
                    await response.read()
                    assert response.status == 200, path
                timings[path].append((time.perf_counter() - started) * 1000)
    return timings


async def serve(context: AppContext) -> tuple[web.AppRunner, str]:
    """The API with the dashboard on a free port of 127.0.0.1."""
    app = create_app(Services.build(context))
    if not any(r.resource and r.resource.canonical == "/" for r in app.router.routes()):
        dashboard.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=10_000)
    parser.add_argument("--per-state", type=int, default=500, help="issues moved to each column")
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--runs", type=int, default=200, help="requests per endpoint")
    args = parser.parse_args()

    async with fresh_database("dashboard") as dsn:
        await run(args, dsn)


async def run(args: argparse.Namespace, dsn: str) -> None:
    runner = None
    pool = None
    try:
        await load(dsn, args.issues, args.per_state, args.agents)

        settings = load_settings({"CONDUCTOR_DATA_DIR": "/nonexistent"})
        pool = await create_pool(dsn, max_size=settings.db_pool_size)
        async with aiohttp.ClientSession() as http:
            context = AppContext.build(settings, dsn, pool, http)
            runner, base = await serve(context)
            timings = await measure(base, args.runs, ENDPOINTS)

        print(f"\n== dashboard endpoints, {args.issues:,} issues, {args.runs} requests each ==")
        print(f"{'endpoint':<72} {'p50 ms':>7} {'p99 ms':>7}")
        worst = 0.0
        for path, values in timings.items():
            p50 = statistics.median(values)
            worst = max(worst, p50)
            print(f"{path:<72} {p50:>7.1f} {percentile(values, 0.99):>7.1f}")
        print(f"\nworst p50 {worst:.1f} ms (target < 100 ms): {'ok' if worst < 100 else 'MISSED'}")
    finally:
        if runner is not None:
            await runner.cleanup()
        if pool is not None:
            await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
