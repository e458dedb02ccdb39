"""Conductor-E processes killed with SIGKILL mid-work: nothing duplicated, nothing lost.

Mid-sync: `conductor-e coordinate --once` killed in the middle of a GitHub sync.

The real process syncs many agent-ready issues across many repos from FakeGitHub. A first run
completes for half of them; then more issues appear, the fake holds back the sync's searches
after the first page, and the process is SIGKILLed while it waits. After the fake lets go, a
second run must take the run lock (a killed process's session lock dies with its connection),
approve every issue exactly once and duplicate no event of any kind.

Mid-append: the same, but killed while the sync's appends are half committed (an uncommitted
row holding one issue's idempotency key makes that append wait; the test kills the process
once PostgreSQL shows it waiting), then rerun.

Mid-alert: `conductor-e bot` killed after FakeDiscord stored an alert but before the bot heard
back (so before it could record the position). The restarted bot reposts that alert with the
same `enforce_nonce` nonce, which Discord answers with the first message: every alert shows
once in the admin channel, none is lost.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from store.events import EventStore, NewEvent
from tests.fakes.discord import FakeDiscord
from tests.fakes.github import FakeGitHub
from tests.test_cli import clean_environment
from tests.waiting import wait_until

REPOS = [f"acme/service-{i:02d}" for i in range(8)]
ISSUES_PER_REPO_FIRST = 20
ISSUES_PER_REPO_LATER = 20
LABEL = "agent-ready"


class GatedGitHub(FakeGitHub):
    """FakeGitHub whose searches after the first `open_searches` wait on a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.open_searches: int | None = None
        self.searches_seen = 0
        self.blocked = asyncio.Event()
        self.gate = asyncio.Event()

    async def _answer(
        self, request: web.Request, handler: Any, headers: dict[str, str]
    ) -> web.StreamResponse:
        if request.path == "/search/issues" and self.open_searches is not None:
            self.searches_seen += 1
            if self.searches_seen > self.open_searches:
                self.blocked.set()
                await self.gate.wait()
        return await super()._answer(request, handler, headers)

    async def stop(self) -> None:
        self.gate.set()
        await super().stop()


@pytest.fixture
async def github() -> AsyncIterator[GatedGitHub]:
    fake = GatedGitHub()
    await fake.start()
    yield fake
    await fake.stop()


def coordinate_env(database_url: str, github: FakeGitHub) -> dict[str, str]:
    env = clean_environment()
    env.update(
        DATABASE_URL=database_url,
        GITHUB_TOKEN=github.token or "",
        CONDUCTOR_GITHUB_API_URL=github.url,
        CONDUCTOR_MANAGED_REPOS=",".join(REPOS),
        CONDUCTOR_AGENT_READY_LABEL=LABEL,
    )
    return env


def spawn_coordinate(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    # Output goes to files: a pipe nobody reads while the test waits could fill and block.
    with log_file.open("w") as log_handle:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "coordinate", "--once"],
            env=env,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )


async def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int:
    """The process's exit code, once it has exited; killed if it does not in time."""
    try:
        return await wait_until(
            process.poll,
            ok=lambda code: code is not None,
            timeout=timeout,
            what=f"process {process.pid} to exit",
            interval=0.05,
        )
    except AssertionError:
        process.kill()
        process.wait()
        raise


async def approvals(dsn: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT data->>'repo' AS repo, (data->>'issueNumber')::int AS number "
            "FROM events WHERE type = 'ISSUE_APPROVED' ORDER BY position"
        )
    finally:
        await conn.close()
    return [(row["repo"].lower(), row["number"]) for row in rows]


async def duplicated_events(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT stream_id, type, data::text AS data, count(*) AS n FROM events "
            "GROUP BY stream_id, type, data::text HAVING count(*) > 1"
        )
    finally:
        await conn.close()


def add_issues(github: FakeGitHub, per_repo: int) -> None:
    for repo in REPOS:
        for _ in range(per_repo):
            github.add_issue(repo, labels=[LABEL])
        # Noise the sync must ignore: an unlabelled issue in every repo.
        github.add_issue(repo, labels=["bug"])


@pytest.mark.slow
async def test_a_sync_killed_midway_then_rerun_approves_every_issue_exactly_once(
    database_url: str, github: GatedGitHub, tmp_path: Path
) -> None:
    env = coordinate_env(database_url, github)
    add_issues(github, ISSUES_PER_REPO_FIRST)

    first = spawn_coordinate(env, tmp_path / "first.log")
    code = await wait_exit(first, timeout=120)
    first_log = (tmp_path / "first.log").read_text()
    assert code == 0, first_log[-3000:]
    assert len(await approvals(database_url)) == len(REPOS) * ISSUES_PER_REPO_FIRST, first_log

    # More agent-ready issues than one page holds; the sync is held after its first page.
    add_issues(github, ISSUES_PER_REPO_LATER)
    github.open_searches = 1
    killed = spawn_coordinate(env, tmp_path / "killed.log")
    try:
        await asyncio.wait_for(github.blocked.wait(), timeout=120)
    finally:
        assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        killed.send_signal(signal.SIGKILL)
    assert await wait_exit(killed, timeout=30) == -signal.SIGKILL
    assert github.searches_seen >= 2  # the kill came in the middle of the search pages

    github.open_searches = None
    github.gate.set()
    second = spawn_coordinate(env, tmp_path / "second.log")
    code = await wait_exit(second, timeout=120)
    second_log = (tmp_path / "second.log").read_text()
    assert code == 0, second_log[-3000:]
    # The run lock died with the killed process's connection: this run was not skipped.
    assert "skipped" not in second_log.lower(), second_log[-3000:]

    expected = {
        (repo.lower(), number)
        for (repo, number), issue in github.issues.items()
        if any(label["name"] == LABEL for label in issue["labels"])
    }
    approved = await approvals(database_url)
    assert len(expected) == len(REPOS) * (ISSUES_PER_REPO_FIRST + ISSUES_PER_REPO_LATER)
    assert sorted(approved) == sorted(expected)  # each once: none missing, none twice
    assert await duplicated_events(database_url) == []


@pytest.mark.slow
async def test_a_sync_killed_in_the_middle_of_its_appends_then_rerun_duplicates_nothing(
    database_url: str, github: GatedGitHub, tmp_path: Path
) -> None:
    env = coordinate_env(database_url, github)
    add_issues(github, ISSUES_PER_REPO_FIRST)
    newest = max(
        (issue for issue in github.issues.values() if issue["labels"][0]["name"] == LABEL),
        key=lambda issue: issue["created_at"],
    )
    # An uncommitted row with the newest issue's idempotency key: the append that uses it waits
    # on the unique index, so the sync is stuck in the middle of its appends when it is killed.
    blocker = await asyncpg.connect(database_url)
    try:
        blocking = blocker.transaction()
        await blocking.start()
        await blocker.execute(
            "INSERT INTO idempotency_keys (key, stream_id, first_position, last_position, "
            "version, recorded_at) VALUES ($1, 'blocker', 0, 0, 0, now())",
            f"approved:{newest['node_id']}:1",
        )
        killed = spawn_coordinate(env, tmp_path / "killed.log")

        async def append_waits() -> bool:
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            # pg_locks, not pg_stat_activity: the latter is a snapshot frozen for the
            # blocker's transaction.
            waiting = await blocker.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted")
            return bool(waiting)

        try:
            await wait_until(
                append_waits,
                timeout=120,
                what="an append waiting",
                interval=0.05,
                detail=lambda: (tmp_path / "killed.log").read_text()[-3000:],
            )
        finally:
            killed.send_signal(signal.SIGKILL)
        assert await wait_exit(killed, timeout=30) == -signal.SIGKILL
        committed_before_kill = len(await approvals(database_url))
        await blocking.rollback()
    finally:
        await blocker.close()
    total = len(REPOS) * ISSUES_PER_REPO_FIRST
    assert committed_before_kill < total

    second = spawn_coordinate(env, tmp_path / "second.log")
    code = await wait_exit(second, timeout=120)
    second_log = (tmp_path / "second.log").read_text()
    assert code == 0, second_log[-3000:]
    assert "skipped" not in second_log.lower(), second_log[-3000:]
    approved = await approvals(database_url)
    expected = {
        (repo.lower(), number)
        for (repo, number), issue in github.issues.items()
        if any(label["name"] == LABEL for label in issue["labels"])
    }
    assert len(expected) == total
    assert sorted(approved) == sorted(expected)
    assert await duplicated_events(database_url) == []
    print(f"\nkilled mid-append with {committed_before_kill}/{total} approvals committed")


ADMIN_CHANNEL = 700_000_000_000_000_200
ALERTS = 6
HELD_POST = 3  # the post after which the bot is killed, 1-based


class HeldDiscord(FakeDiscord):
    """FakeDiscord that stores the `hold_at`-th channel message, then holds back the answer."""

    def __init__(self) -> None:
        super().__init__(channel_ids={"admin": ADMIN_CHANNEL})
        self.hold_at: int | None = HELD_POST
        self.posts = 0
        self.held = asyncio.Event()
        self.gate = asyncio.Event()

    async def _op_create_message(
        self, request: web.Request, params: dict[str, str], body: Any, files: Any
    ) -> web.Response:
        response = await super()._op_create_message(request, params, body, files)
        self.posts += 1
        if self.posts == self.hold_at:
            self.held.set()
            await self.gate.wait()
        return response

    async def close(self) -> None:
        self.gate.set()
        await super().close()


@pytest.fixture
async def discord() -> AsyncIterator[HeldDiscord]:
    fake = HeldDiscord()
    await fake.start()
    yield fake
    await fake.close()


def bot_env(database_url: str, discord: FakeDiscord) -> dict[str, str]:
    env = clean_environment()
    env.update(
        DATABASE_URL=database_url,
        DISCORD_BOT_TOKEN=discord.token,
        CONDUCTOR_DISCORD_API_URL=discord.api_url,
        CONDUCTOR_GUILD_ID=str(discord.guild_id),
        CONDUCTOR_ADMIN_CHANNEL_ID=str(ADMIN_CHANNEL),
    )
    return env


def spawn_bot(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("w") as log_handle:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "bot"],
            env=env,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )


async def alert_position(dsn: str) -> int | None:
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval(
            "SELECT (value #>> '{}')::bigint FROM app_state WHERE key = 'discord.alerts.position'"
        )
    finally:
        await conn.close()
    return None if value is None else int(value)


@pytest.mark.slow
async def test_a_bot_killed_mid_alert_post_posts_every_alert_exactly_once(
    database_url: str, store: EventStore, discord: HeldDiscord, tmp_path: Path
) -> None:
    env = bot_env(database_url, discord)
    first_log = tmp_path / "bot-first.log"
    bot = spawn_bot(env, first_log)
    try:
        # The alert service starts at the head of the store once it has recorded its position.
        async def started() -> bool:
            assert bot.poll() is None, first_log.read_text()[-3000:]
            return await alert_position(database_url) is not None

        await wait_until(
            started,
            timeout=60,
            what="the alert service starting",
            interval=0.05,
            detail=lambda: first_log.read_text()[-3000:],
        )

        for i in range(ALERTS):
            data = {"agentId": f"dev-e-{i}", "reason": f"no progress for {i + 1}h (#{i})"}
            await store.append(f"dev-e-{i}", [NewEvent("AGENT_STUCK", data)])
        await asyncio.wait_for(discord.held.wait(), timeout=60)
    finally:
        bot.send_signal(signal.SIGKILL)
    assert await wait_exit(bot, timeout=30) == -signal.SIGKILL
    stored_when_killed = len(discord.channel_messages(ADMIN_CHANNEL))
    assert stored_when_killed == HELD_POST

    discord.hold_at = None
    discord.gate.set()
    second_log = tmp_path / "bot-second.log"
    bot = spawn_bot(env, second_log)
    try:

        async def all_posted() -> bool:
            assert bot.poll() is None, second_log.read_text()[-3000:]
            return len(discord.channel_messages(ADMIN_CHANNEL)) >= ALERTS

        await wait_until(
            all_posted,
            timeout=60,
            what="every alert in the channel",
            interval=0.05,
            detail=lambda: second_log.read_text()[-3000:],
        )
    finally:
        bot.send_signal(signal.SIGTERM)
        await wait_exit(bot, timeout=30)

    messages = discord.channel_messages(ADMIN_CHANNEL)
    reasons = [f"(#{i})" for i in range(ALERTS)]
    for reason in reasons:
        matching = [m for m in messages if reason in m["content"]]
        assert len(matching) == 1, (reason, [m["content"] for m in messages])
    nonces = [m.get("nonce") for m in messages]
    assert len(nonces) == len(set(nonces)) == ALERTS
    # The held alert was asked for again after the restart, and answered with the first message.
    creates = [r for r in discord.requests if r.method == "POST" and str(ADMIN_CHANNEL) in r.path]
    assert len(creates) > ALERTS
    assert discord.schema_errors == [] and discord.unhandled == []
