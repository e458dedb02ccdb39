"""Cost summary benchmark: `/cost summary 30` over 1,000,000 TOKEN_USAGE events.

Run by hand (`python bench/cost_summary.py`), not as a test. Uses an embedded PostgreSQL in a
temporary directory, or a fresh database on the server in DATABASE_URL.

Loading is honest about the projections: a sample of events goes through EventStore.append
(the path agents' events take); the rest is inserted into `events` in one server-side
statement and then projected by `conductor_project_range`, the same plpgsql function every
append runs. The event shapes are realistic: 10 agents, 5 repos, 20,000 issues of 50 calls
each over 60 days, Sonnet/Haiku/Opus with cache reads and writes, most events reporting a
cost (dev-e-6 mis-prices by 30%, dev-e-7 reports none), a few on a model with no price.

Then the summary (what `/cost summary 30` and GET /api/costs/summary?days=30 call) is timed
over 100 runs, with the daily series and one issue's cost for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import fresh_database  # noqa: E402
from bot.context import AppContext  # noqa: E402
from bot.services.costs.ledger import CostService  # noqa: E402
from bot.services.costs.pricing import Pricing  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from store.database import connect, create_pool  # noqa: E402
from store.events import EventStore, NewEvent  # noqa: E402

# Until the cost readers are merged into store/projections/reads.py.

BULK_SQL = """
INSERT INTO events (stream_id, version, type, data, metadata, recorded_at)
SELECT agent, row_number() OVER (PARTITION BY agent ORDER BY i), 'TOKEN_USAGE',
       jsonb_strip_nulls(jsonb_build_object(
           'agentId', agent, 'model', model, 'inputTokens', inp, 'outputTokens', outp,
           'cacheReadTokens', cr, 'cacheCreationTokens', cw,
           'costUsd', CASE WHEN agent = 'dev-e-7' THEN NULL
                           ELSE round((inp * r_in + outp * r_out + cr * r_read + cw * r_w5)
                                      / 1000000 * drift, 8) END,
           'repo', repo, 'issueNumber', issue)),
       '{"source": "bench"}'::jsonb,
       $2::timestamptz + make_interval(secs => i * $3::double precision / $1)
FROM (
    SELECT i, agent, model, inp, outp, cr, cw, repo, issue,
           CASE WHEN agent = 'dev-e-6' THEN 1.3 ELSE 1.0 END AS drift,
           CASE model WHEN 'claude-sonnet-4-6' THEN 3 WHEN 'claude-haiku-4-5' THEN 1
                      WHEN 'claude-opus-4-6' THEN 5 ELSE 2 END AS r_in,
           CASE model WHEN 'claude-sonnet-4-6' THEN 15 WHEN 'claude-haiku-4-5' THEN 5
                      WHEN 'claude-opus-4-6' THEN 25 ELSE 10 END AS r_out,
           CASE model WHEN 'claude-sonnet-4-6' THEN 0.30 WHEN 'claude-haiku-4-5' THEN 0.10
                      WHEN 'claude-opus-4-6' THEN 0.50 ELSE 0.2 END AS r_read,
           CASE model WHEN 'claude-sonnet-4-6' THEN 3.75 WHEN 'claude-haiku-4-5' THEN 1.25
                      WHEN 'claude-opus-4-6' THEN 6.25 ELSE 2.5 END AS r_w5
    FROM (
        SELECT i,
               CASE WHEN i % 97 = 0 THEN 'conductor-e'
                    WHEN i % 5 = 4 THEN 'review-e-' || ((i / 50) % 2 + 1)
                    ELSE 'dev-e-' || ((i / 50) % 7 + 1) END AS agent,
               CASE WHEN i % 997 = 0 THEN 'claude-mystery-1'
                    WHEN i % 97 = 0 OR i % 5 = 4 THEN 'claude-haiku-4-5'
                    WHEN i % 11 = 0 THEN 'claude-opus-4-6'
                    ELSE 'claude-sonnet-4-6' END AS model,
               2000 + (i * 7919) % 30000 AS inp,
               200 + (i * 104729) % 4000 AS outp,
               (i * 15485863) % 60000 AS cr,
               CASE WHEN i % 4 = 0 THEN (i * 32452843) % 8000 ELSE 0 END AS cw,
               CASE WHEN i % 97 = 0 THEN NULL ELSE 'acme/repo' || ((i / 50) % 5) END AS repo,
               CASE WHEN i % 97 = 0 THEN NULL ELSE (i / 50) + 1 END AS issue
        FROM generate_series(0::bigint, $1::bigint - 1) AS i
    ) base
) s
ORDER BY i
"""


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def timed(runs: int, op: Callable[[], Awaitable[Any]]) -> tuple[float, float, float]:
    """p50, p99 and mean in milliseconds over `runs` calls (after two warm-up calls)."""
    for _ in range(2):
        await op()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await op()
        samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 50), percentile(samples, 99), statistics.fmean(samples)


async def load(dsn: str, total: int, sample: int) -> None:
    conn = await connect(dsn)
    try:
        started = time.perf_counter()
        now = datetime.now(UTC)
        start = now - timedelta(days=60)
        span = (now - timedelta(hours=1) - start).total_seconds()
        await conn.execute(BULK_SQL, total - sample, start, span)
        head = int(await conn.fetchval("SELECT max(position) FROM events"))
        print(f"  inserted {head:,} events in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        step = 50_000
        for after in range(0, head, step):
            await conn.execute("SELECT conductor_project_range($1, $2)", after, after + step)
            # What autovacuum does as appends trickle in: without it, a million updates in a
            # minute leave the usage tables mostly dead row versions, which no live system has.
            await conn.execute("VACUUM usage_daily, usage_by_issue")
        print(f"  projected them in {time.perf_counter() - started:.1f}s (conductor_project)")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()

    pool = await create_pool(dsn, max_size=10)
    try:
        store = EventStore(pool)
        pricing = Pricing()
        started = time.perf_counter()
        models = ("claude-sonnet-4-6", "claude-haiku-4-5-20251001", "claude-opus-4-6")

        async def append(k: int) -> None:
            data = {
                "agentId": f"dev-e-{k % 7 + 1}",
                "model": models[k % 3],
                "inputTokens": 1000 + k,
                "outputTokens": 100 + k,
                "cacheReadTokens": 5000,
                "costUsd": float(
                    pricing.cost(models[k % 3], datetime.now(UTC).date(), 1000 + k, 100 + k, 5000)
                    or 0
                ),
                "repo": f"acme/repo{k % 5}",
                "issueNumber": 1_000_000 + k // 10,
            }
            await store.append(data["agentId"], [NewEvent("TOKEN_USAGE", data)])

        for chunk in range(0, sample, 50):
            await asyncio.gather(*(append(k) for k in range(chunk, min(sample, chunk + 50))))
        print(
            f"  appended {sample:,} events through EventStore.append in "
            f"{time.perf_counter() - started:.1f}s"
        )
    finally:
        await pool.close()


async def measure(dsn: str, runs: int) -> None:
    pool = await create_pool(dsn, max_size=10)
    try:
        async with aiohttp.ClientSession() as http:
            settings = load_settings({"CONDUCTOR_DATA_DIR": "/nonexistent"})
            ctx = AppContext.build(settings, dsn, pool, http)
            service = CostService(ctx)
            counts = await pool.fetchrow(
                "SELECT (SELECT count(*) FROM events) AS events, "
                "(SELECT sum(events) FROM usage_daily) AS projected, "
                "(SELECT count(*) FROM usage_daily) AS daily_rows, "
                "(SELECT count(*) FROM usage_by_issue) AS issue_rows"
            )
            print(
                f"  {counts['events']:,} events; usage_daily {counts['daily_rows']:,} rows "
                f"covering {counts['projected']:,} events; usage_by_issue "
                f"{counts['issue_rows']:,} rows"
            )
            summary = await service.summary(30)
            print(
                f"  30-day summary: ${summary.total.cost_usd:,.2f} over "
                f"{summary.total.events:,} events, {len(summary.by_agent_model)} agent/model "
                f"rows, {len(summary.mismatches)} flagged, unknown models "
                f"{summary.unknown_models}, top issue "
                f"{summary.top_issues[0].stream_id or '(unattributed)'} "
                f"(${summary.top_issues[0].cost_usd:,.2f}), priced by "
                f"{' + '.join(summary.price_sources)}"
            )
            # The most expensive issue (the usage that named none, conductor-e's, may rank above).
            issue = next(i for i in summary.top_issues if not i.unattributed)
            assert issue.repo is not None and issue.number is not None
            print(f"\n{'operation':<34}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
            for name, op in (
                ("cost summary 30 days", lambda: service.summary(30)),
                ("cost summary 30 days, one agent", lambda: service.summary(30, "dev-e-1")),
                ("daily series 30 days (chart)", lambda: service.daily(30)),
                ("one issue's cost", lambda: service.issue(issue.repo, issue.number)),
            ):
                p50, p99, mean = await timed(runs, op)
                print(f"{name:<34}{p50:>9.1f}{p99:>9.1f}{mean:>9.1f}")
    finally:
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=1_000, help="events through append")
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()

    async with fresh_database("cost") as dsn:
        print(f"loading {args.events:,} TOKEN_USAGE events ...")
        await load(dsn, args.events, args.sample)
        await measure(dsn, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
