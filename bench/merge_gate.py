"""Merge gate benchmark: time from the last green webhook to the merge request, and GitHub
requests per decision.

Run by hand (`python bench/merge_gate.py`), not as a test. The real API (aiohttp, signed
webhook route) runs on 127.0.0.1 over a real PostgreSQL (embedded, or a fresh database on the
server in DATABASE_URL); the real gidgethub client talks to the fake GitHub of
tests/fakes/github/, which stamps the moment each `PUT .../merge` arrives.

For each of N PRs (reviewed by Review-E through `POST /api/events`, so the verdict holds the
head), the check suite turns green on GitHub and its `check_suite completed` webhook is sent;
the figure is the time from sending that webhook to the merge request reaching GitHub.
Target: p50 < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import fresh_database, percentile  # noqa: E402
from bot.context import AppContext  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.web.app import create_app  # noqa: E402
from bot.wiring import Services  # noqa: E402
from store.database import create_pool  # noqa: E402
from store.events import NewEvent  # noqa: E402
from tests.fakes.github import (  # noqa: E402
    FakeGitHub,
    check_suite_payload,
    delivery_headers,
    encode,
)

TOKEN = "ghp_bench_token"
SECRET = b"bench-webhook-secret"
REPO = "bench-org/service"


class TimedGitHub(FakeGitHub):
    """The fake GitHub, noting when each merge request arrives (perf_counter)."""

    def __init__(self) -> None:
        super().__init__(token=TOKEN)
        self.merged_at: dict[int, float] = {}

    async def _merge(self, request: web.Request) -> web.Response:
        self.merged_at[int(request.match_info["number"])] = time.perf_counter()
        return await super()._merge(request)


async def run(dsn: str, prs: int) -> None:
    pool = await create_pool(dsn, max_size=20)
    try:
        async with TimedGitHub() as fake, aiohttp.ClientSession() as session:
            settings = load_settings(
                {
                    "CONDUCTOR_DATA_DIR": "/nonexistent",
                    "CONDUCTOR_GITHUB_API_URL": fake.url,
                    "GITHUB_TOKEN": TOKEN,
                    "CONDUCTOR_GITHUB_WEBHOOK_SECRET": SECRET.decode(),
                    "CONDUCTOR_MANAGED_REPOS": REPO,
                    "CONDUCTOR_MERGE_REPOS": REPO,
                }
            )
            context = AppContext.build(settings, dsn, pool, session)
            server = TestServer(create_app(Services.build(context)), host="127.0.0.1")
            await server.start_server()
            api = str(server.make_url(""))
            try:
                await measure(context, fake, session, api, prs)
            finally:
                await server.close()
    finally:
        await pool.close()


async def post(session: aiohttp.ClientSession, url: str, body: bytes, **headers: str) -> Any:
    async with session.post(url, data=body, headers=headers) as response:
        assert response.status in (200, 202), (response.status, await response.text())
        return await response.json()


async def measure(
    context: AppContext, fake: TimedGitHub, session: aiohttp.ClientSession, api: str, prs: int
) -> None:
    for n in range(1, prs + 1):
        stream = f"{REPO}#{n}"
        await context.store.append(
            stream,
            [
                NewEvent("ISSUE_APPROVED", {"repo": REPO, "issueNumber": n, "title": "t"}),
                NewEvent("ISSUE_ASSIGNED", {"repo": REPO, "issueNumber": n, "agentId": "dev-e"}),
                NewEvent("PR_CREATED", {"repo": REPO, "issueNumber": n, "prNumber": 1000 + n}),
            ],
        )
        fake.add_pull(REPO, 1000 + n, body=f"Closes #{n}")
        verdict = {
            "type": "REVIEW_PASSED",
            "repo": REPO,
            "issueNumber": 1000 + n,
            "prNumber": 1000 + n,
            "agentId": "review-e",
        }
        await post(
            session,
            f"{api}/api/events",
            json.dumps(verdict).encode(),
            **{"Content-Type": "application/json"},
        )
    latencies: list[float] = []
    requests: list[int] = []
    for n in range(1, prs + 1):
        number = 1000 + n
        fake.green(REPO, number)
        body = encode(check_suite_payload(REPO, "success", [number]))
        before = len(fake.requests)
        sent = time.perf_counter()
        await post(
            session,
            f"{api}/api/webhook/github",
            body,
            **delivery_headers("check_suite", body, SECRET),
        )
        merged = fake.merged_at.get(number)
        assert merged is not None, f"PR {number} was not merged"
        latencies.append(merged - sent)
        requests.append(len(fake.requests) - before)
    assert len(fake.merge_calls) == prs
    ms = [value * 1000 for value in latencies]
    print(f"{prs} PRs, each reviewed, then its check suite turns green (webhook → merge request)")
    print(
        f"  latency: p50 {percentile(ms, 0.5):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
        f"max {max(ms):.1f} ms (target p50 < 1000 ms)"
    )
    print(
        f"  GitHub requests per merging decision: {sum(requests) / len(requests):.1f} "
        "(the PR, its reviews, check runs, combined status, the merge); "
        "+1 per verdict (the head it reviewed)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prs", type=int, default=200)
    args = parser.parse_args()
    async with fresh_database("merge_gate") as dsn:
        await run(dsn, args.prs)


if __name__ == "__main__":
    asyncio.run(main())
