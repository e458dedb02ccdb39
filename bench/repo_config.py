"""Repo configuration benchmark: GitHub requests to read every repo's `.rig-agent.yaml`, on a
first pass and on an unchanged second pass.

Run by hand (`python bench/repo_config.py`), not as a test. The real gidgethub client talks HTTP
to the fake GitHub of tests/fakes/github/ on 127.0.0.1 (its contents API answers with an ETag
and a 304 to a matching If-None-Match, and counts only non-304 answers against the rate limit,
as GitHub does), and RepoConfigService appends to a real PostgreSQL: the embedded server in a
temporary directory, or a fresh database on the server in DATABASE_URL.

  first pass:  every repo is new → one contents request each, one REPO_CONFIG_CHANGED per file.
  second pass: nothing changed → target: every request conditional (304), none counted against
               the rate limit, nothing appended. Repos without a file (a 404 has no ETag) are
               not re-read within the hour.
  one change:  one file edited → one counted request, one REPO_CONFIG_CHANGED.
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
from bot.services.work.repo_config import CONFIG_PATH, RepoConfigService  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from store.database import create_pool  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402

TOKEN = "ghp_bench_token"
STACKS = ("node", "python", "dotnet", "ios")


async def run(dsn: str, repos: int, without: int) -> None:
    pool = await create_pool(dsn, max_size=20)
    try:
        async with FakeGitHub(token=TOKEN) as fake, aiohttp.ClientSession() as session:
            names = [f"bench-org/service-{i:03d}" for i in range(repos)]
            for i, name in enumerate(names[without:]):
                fake.set_file(name, CONFIG_PATH, f"stack: {STACKS[i % len(STACKS)]}\n")
            settings = load_settings(
                {
                    "CONDUCTOR_DATA_DIR": "/nonexistent",
                    "CONDUCTOR_GITHUB_API_URL": fake.url,
                    "GITHUB_TOKEN": TOKEN,
                }
            )
            context = AppContext.build(settings, dsn, pool, session)
            service = RepoConfigService(context, GitHubClient(session, settings))
            print(f"{repos} repos: {repos - without} with a {CONFIG_PATH}, {without} without")

            async def one(label: str) -> None:
                before, head = len(fake.requests), await context.store.head_position()
                used = fake.windows["core"].used
                started = time.perf_counter()
                result = await service.refresh(names)
                elapsed = time.perf_counter() - started
                sent = fake.requests[before:]
                conditional = sum(1 for r in sent if "if-none-match" in r.headers)
                not_modified = sum(1 for r in sent if r.status == 304)
                counted = fake.windows["core"].used - used
                appended = await context.store.head_position() - head
                print(
                    f"{label:<12} {elapsed:7.3f} s   requests {len(sent):4d}   "
                    f"conditional {conditional:4d}   304 {not_modified:4d}   "
                    f"counted against the rate limit {counted:4d}   "
                    f"not re-read (no file) {result.skipped:4d}   events appended {appended:4d}"
                )

            await one("first pass")
            await one("second pass")
            fake.set_file(names[-1], CONFIG_PATH, "stack: python\ntestCommand: pytest\n")
            await one("one change")
    finally:
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--without", type=int, default=20, help="repos without the file")
    args = parser.parse_args()
    async with fresh_database("repoconfig") as dsn:
        await run(dsn, args.repos, args.without)


if __name__ == "__main__":
    asyncio.run(main())
