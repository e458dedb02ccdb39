"""GitHub sync benchmark: requests and wall time of a first and an unchanged second sync.

Run by hand (`python bench/github_sync.py`), not as a test. The real gidgethub client talks
HTTP to the fake GitHub of tests/fakes/github/ on 127.0.0.1 (search limited to 30 requests a
minute, as GitHub's is), and SyncService appends to a real PostgreSQL: the embedded server in
a temporary directory, or a fresh database on the server in DATABASE_URL.

  first run:  every issue is new → one ISSUE_APPROVED each.
  second run: nothing changed on GitHub → target: appends nothing, spends at most a handful of
              rate-limited requests (304s are free), finishes under 2 s.
  one change: one issue gains a priority label → one PRIORITY_CHANGED.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import fresh_database  # noqa: E402
from bot.context import AppContext  # noqa: E402
from bot.integrations.github import GitHubClient  # noqa: E402
from bot.services.github.sync import SyncResult, SyncService  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from store.database import create_pool  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402

TOKEN = "ghp_bench_token"


def line(name: str, result: SyncResult, seconds: float, fake: FakeGitHub, before: int) -> str:
    spent = sum(1 for r in fake.requests[before:] if r.status != 304)
    return (
        f"{name:<12} {seconds:7.3f} s   requests {result.requests:4d} "
        f"(304: {result.not_modified:4d}, rate-limited spend: {spent:4d})   "
        f"approved {len(result.approved):5d}  withdrawn {len(result.withdrawn):3d}  "
        f"reprioritised {len(result.reprioritised):3d}  incomplete {result.incomplete}"
    )


async def run(dsn: str, repos: int, issues: int) -> None:
    pool = await create_pool(dsn, max_size=20)
    try:
        async with FakeGitHub(token=TOKEN) as fake, aiohttp.ClientSession() as session:
            names = [f"bench-org/service-{i:03d}" for i in range(repos)]
            for i in range(issues):
                fake.add_issue(names[i % repos], labels=["agent-ready"])
            settings = load_settings(
                {
                    "CONDUCTOR_DATA_DIR": "/nonexistent",
                    "CONDUCTOR_GITHUB_API_URL": fake.url,
                    "GITHUB_TOKEN": TOKEN,
                    "CONDUCTOR_MANAGED_REPOS": ",".join(names),
                }
            )
            context = AppContext.build(settings, dsn, pool, session)
            sync = SyncService(context, GitHubClient(session, settings))
            print(f"{repos} managed repos, {issues} agent-ready issues")

            for label in ("first run", "second run"):
                before, head = len(fake.requests), await context.store.head_position()
                started = time.perf_counter()
                result = await sync.run()
                elapsed = time.perf_counter() - started
                print(line(label, result, elapsed, fake, before))
                appended = await context.store.head_position() - head
                print(f"{'':<12} events appended: {appended}")

            fake.add_label(names[0], 1, "P0")
            before = len(fake.requests)
            started = time.perf_counter()
            result = await sync.run()
            print(line("one change", result, time.perf_counter() - started, fake, before))
            print(f"search queries per run: {len(fake.search_queries()) // 3}")
    finally:
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--issues", type=int, default=2000)
    args = parser.parse_args()
    async with fresh_database("github") as dsn:
        await run(dsn, args.repos, args.issues)


if __name__ == "__main__":
    asyncio.run(main())
