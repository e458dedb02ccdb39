"""Bot benchmark: `/queue show` latency with 10,000 queued issues, and the bot's memory.

Run by hand (`python bench/bot_queue.py`), not as a test. It starts an embedded PostgreSQL,
queues 10,000 issues through the real append function, starts the fake Discord in this
process and the real `conductor-e bot` as a separate process pointed at both, then:

  latency: from the fake sending INTERACTION_CREATE to the bot's callback request arriving
           (p50/p99 over --runs runs of `/queue show`; target p50 < 50 ms)
  memory:  the bot process's resident set size after start-up (target < 150 MB)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import bot_process, fresh_database, percentile  # noqa: E402
from store.database import connect  # noqa: E402
from tests.fakes.discord import FakeDiscord  # noqa: E402

SEED = """
DO $$
BEGIN
  FOR i IN 1..{count} LOOP
    PERFORM conductor_append(
      'bench/repo' || (i % 20) || '#' || i, NULL, NULL, ARRAY['ISSUE_APPROVED'],
      ARRAY[jsonb_build_object('repo', 'bench/repo' || (i % 20), 'issueNumber', i,
            'title', 'Benchmark issue number ' || i,
            'priority', (ARRAY['critical','high','normal'])[1 + i % 3],
            'url', 'https://github.com/bench/repo' || (i % 20) || '/issues/' || i)],
      ARRAY['{{}}'::jsonb]);
  END LOOP;
END $$;
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def main(args: argparse.Namespace) -> None:
    async with fresh_database("bot") as dsn:
        await run(args, dsn)


async def run(args: argparse.Namespace, dsn: str) -> None:
    fake = FakeDiscord()
    await fake.start()
    try:
        conn = await connect(dsn)
        try:
            started = time.perf_counter()
            await conn.execute(SEED.format(count=args.issues))
            queued = await conn.fetchval("SELECT count(*) FROM issues WHERE state = 'queued'")
        finally:
            await conn.close()
        print(f"seeded {queued:,} queued issues in {time.perf_counter() - started:.1f}s")

        started = time.perf_counter()
        async with bot_process(dsn, fake, "queue") as process:
            print(f"bot connected and synced in {time.perf_counter() - started:.2f}s")
            # Warm-up: the first interactions pay for imports, pool connections and plan caches.
            for _ in range(5):
                await (await fake.invoke("queue show")).callback(timeout=30)
            memory = rss_mb(process.pid)

            latencies = []
            for _ in range(args.runs):
                interaction = await fake.invoke("queue show")
                await interaction.callback(timeout=30)
                assert interaction.callback_at is not None and interaction.dispatched_at is not None
                latencies.append((interaction.callback_at - interaction.dispatched_at) * 1000)
            assert not fake.schema_errors, fake.schema_errors

            p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
            print(f"/queue show with {queued:,} queued issues, {args.runs} runs:")
            print(
                f"  INTERACTION_CREATE → callback: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
                f"(min {min(latencies):.1f}, max {max(latencies):.1f}); target p50 < 50 ms: "
                f"{'met' if p50 < 50 else 'NOT met'}"
            )
            print(
                f"  bot RSS after start-up: {memory:.0f} MB; target < 150 MB: "
                f"{'met' if memory < 150 else 'NOT met'}"
            )
    finally:
        await fake.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
