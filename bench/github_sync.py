"""GitHub sync benchmark: requests and wall time of a first and an unchanged second sync.

Run by hand (`python bench/github_sync.py`), not as a test. The real gidgethub client talks
HTTP to the fake GitHub of tests/fakes/github.py on 127.0.0.1 (search limited to 30 requests a
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
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.context import AppContext  # noqa: E402
from bot.integrations.github import GitHubClient  # noqa: E402
from bot.services.github_sync import SyncResult, SyncService  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from store.database import (  # noqa: E402
    EmbeddedPostgres,
    connect,
    create_pool,
    migrate,
    with_database,
)
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


async def run(server_dsn: str, repos: int, issues: int) -> None:
    name = f"bench_github_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    dsn = with_database(server_dsn, name)
    conn = await connect(dsn)
    await migrate(conn)
    await conn.close()
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
        admin = await asyncpg.connect(server_dsn)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--issues", type=int, default=2000)
    args = parser.parse_args()
    embedded = None
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        root = Path(tempfile.mkdtemp(prefix="conductor-e-bench-"))
        os.chmod(root, 0o755)  # the embedded server runs as its own user when we are root
        embedded = EmbeddedPostgres(root)
        dsn = await embedded.start()
    try:
        await run(dsn, args.repos, args.issues)
    finally:
        if embedded is not None:
            await embedded.stop()
            embedded.destroy()


if __name__ == "__main__":
    asyncio.run(main())
