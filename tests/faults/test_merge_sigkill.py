"""`conductor-e coordinate --once` SIGKILLed between GitHub's merge and the MERGED record.

The loop's merge-gate sweep merges a reviewed, green PR; the fake GitHub merges it and then
holds its answer until the test has killed the process, so MERGED was never recorded. The next
run reads GitHub (merged) and records MERGED exactly once, and never asks GitHub to merge again.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from store.events import EventStore, NewEvent
from tests.fakes.github import FakeGitHub
from tests.faults.test_sigkill import spawn_coordinate, wait_exit
from tests.test_cli import clean_environment

REPO = "acme/api"
PR = 40


class HeldMerge(FakeGitHub):
    """Merges, then holds the answer to the merge request until released."""

    def __init__(self) -> None:
        super().__init__()
        self.merged = asyncio.Event()
        self.hold = asyncio.Event()

    async def _merge(self, request: web.Request) -> web.Response:
        response = await super()._merge(request)
        self.merged.set()
        await self.hold.wait()
        return response

    async def stop(self) -> None:
        self.hold.set()
        await super().stop()


async def merged_events(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE type = 'MERGED'"))
    finally:
        await conn.close()


@pytest.mark.slow
async def test_a_merge_whose_process_died_is_recorded_once_by_the_next_run(
    database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    github = HeldMerge()
    await github.start()
    try:
        github.add_issue(REPO, 5, labels=["agent-ready"])
        github.add_pull(REPO, PR, body="Closes #5")
        github.green(REPO, PR)
        github.add_review(REPO, PR)  # approved on the head
        store = EventStore(pool)
        base = {"repo": REPO, "issueNumber": 5}
        await store.append(
            f"{REPO}#5",
            [
                NewEvent("ISSUE_APPROVED", {**base, "title": "t"}),
                NewEvent("ISSUE_ASSIGNED", {**base, "agentId": "dev-e"}),
                NewEvent("PR_CREATED", {**base, "prNumber": PR}),
            ],
        )
        env: dict[str, Any] = clean_environment()
        env.update(
            DATABASE_URL=database_url,
            GITHUB_TOKEN=github.token or "",
            CONDUCTOR_GITHUB_API_URL=github.url,
            CONDUCTOR_MANAGED_REPOS=REPO,
            CONDUCTOR_MERGE_REPOS=REPO,
        )

        killed = spawn_coordinate(env, tmp_path / "killed.log")
        try:
            await asyncio.wait_for(github.merged.wait(), timeout=120)
        finally:
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            killed.send_signal(signal.SIGKILL)
        assert await wait_exit(killed, timeout=30) == -signal.SIGKILL
        github.hold.set()
        assert github.pull(REPO, PR)["merged"] and await merged_events(database_url) == 0

        again = spawn_coordinate(env, tmp_path / "again.log")
        code = await wait_exit(again, timeout=120)
        assert code == 0, (tmp_path / "again.log").read_text()[-3000:]

        assert await merged_events(database_url) == 1
        assert len(github.merge_calls) == 1
    finally:
        await github.stop()
