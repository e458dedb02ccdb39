"""Whole runs: one at a time across coroutines and processes, the run record, dry runs, and a
database that goes away."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from bot.context import AppContext
from bot.integrations.github import GitHubUnavailable
from bot.services.coordination.loop import CoordinationService
from bot.services.coordination.result import format_line
from bot.services.github.sync import SyncResult
from store.database import create_pool
from tests.coordination.conftest import (
    GITHUB_TOKEN,
    Clock,
    approve,
    events,
    github_client,
    start_work,
)
from tests.coordination.fake_webhook import FakeWebhook
from tests.fakes.github import FakeGitHub
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
REPOS = "acme/api,acme/web"
READY = "agent-ready"


@pytest.fixture
def github_env(env: dict[str, str], github_fake: FakeGitHub) -> dict[str, str]:
    github_fake.add_issue("acme/api", 1, labels=[READY, "P0"])
    github_fake.add_issue("acme/api", 2, labels=[READY])
    github_fake.add_issue("acme/web", 3, labels=[READY, "priority:high"])
    github_fake.add_issue("acme/web", 4, labels=["bug"])
    return {
        **env,
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "CONDUCTOR_GITHUB_API_URL": github_fake.url,
        "CONDUCTOR_MANAGED_REPOS": REPOS,
    }


def finished(tasks: list[asyncio.Task[object]]) -> int:
    return sum(t.done() for t in tasks)


def type_counts(found: list[object]) -> Counter[str]:
    return Counter(e.type for e in found)  # type: ignore[attr-defined]


EXPECTED_ONE_RUN = {
    "ISSUE_APPROVED": 3 + 1,  # three from GitHub, one recorded by the test
    "ISSUE_ASSIGNED": 1,
    "WORK_STARTED": 1,
    "AGENT_STUCK": 1,
    "ISSUE_UNASSIGNED": 1,
    "SUMMARY_POSTED": 1,
    "COORDINATION_RUN_COMPLETED": 1,
}


async def test_ten_concurrent_runs_in_one_process_do_the_work_once(
    make_context: Callable[..., AppContext],
    github_env: dict[str, str],
    clock: Clock,
    webhook: FakeWebhook,
    http_session: aiohttp.ClientSession,
    make_service: Callable[..., CoordinationService],
) -> None:
    ctx = make_context(github_env, clock=clock)
    await start_work(ctx, "acme/ops", 9, "dev-e-1")
    clock.later(minutes=31)
    # The winner is held at its webhook post until every other run has given up.
    webhook.hold()
    services = [make_service(ctx, github=github_client(http_session, ctx)) for _ in range(10)]

    tasks = [asyncio.create_task(s.run()) for s in services]
    await wait_until(
        lambda: finished(tasks), ok=lambda n: n >= 9, timeout=30, what="nine runs to give up"
    )
    webhook.release()
    results = [await t for t in tasks]

    skipped = [r for r in results if r.skipped]
    (winner,) = [r for r in results if not r.skipped]
    assert len(skipped) == 9
    assert all(r.exit_code == 0 and r.appended == 0 for r in skipped)
    assert format_line(skipped[0]).startswith("coordination skipped in ")
    assert winner.ok, winner.errors
    assert sorted(winner.approved) == ["acme/api#1", "acme/api#2", "acme/web#3"]
    assert winner.stuck == ["acme/ops#9"] and winner.summaries_posted == 1
    assert type_counts(await events(ctx)) == EXPECTED_ONE_RUN
    assert len(webhook.messages) == 1


COORDINATE_ONCE = [sys.executable, "-m", "bot", "coordinate", "--once"]


async def test_ten_concurrent_processes_do_the_work_once(
    database_url: str,
    make_context: Callable[..., AppContext],
    github_env: dict[str, str],
    clock: Clock,
    webhook: FakeWebhook,
) -> None:
    ctx = make_context(github_env, clock=clock)
    await start_work(ctx, "acme/ops", 9, "dev-e-1")
    # The processes use the wall clock: make the work look 31 minutes old in the database.
    async with ctx.pool.acquire() as conn:
        await conn.execute(
            "UPDATE issues SET last_activity = last_activity - interval '31 minutes'"
        )
    webhook.hold()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": database_url,
        "CONDUCTOR_DATA_DIR": "/nonexistent",
        "CONDUCTOR_LOG_LEVEL": "WARNING",
        **github_env,
    }
    procs = [
        await asyncio.create_subprocess_exec(
            *COORDINATE_ONCE,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(10)
    ]
    tasks = [asyncio.create_task(p.communicate()) for p in procs]
    try:
        await wait_until(
            lambda: finished(tasks),
            ok=lambda n: n >= 9,
            timeout=120,
            what="nine processes to give up",
        )
    finally:
        webhook.release()
    outputs = [await t for t in tasks]

    lines = [out.decode().strip() for out, _ in outputs]
    codes = [p.returncode for p in procs]
    assert codes == [0] * 10, [err.decode()[-2000:] for _, err in outputs]
    assert sum(line.startswith("coordination skipped in ") for line in lines) == 9, lines
    (winner,) = [line for line in lines if not line.startswith("coordination skipped")]
    assert winner.startswith("coordination ok in ")
    assert "3 approved" in winner and "stuck 1 (1 requeued, 0 escalated)" in winner
    assert type_counts(await events(ctx)) == EXPECTED_ONE_RUN
    assert len(webhook.messages) == 1


async def test_the_run_is_recorded_with_what_it_found_and_did(
    make_context: Callable[..., AppContext],
    github_env: dict[str, str],
    clock: Clock,
    http_session: aiohttp.ClientSession,
    make_service: Callable[..., CoordinationService],
) -> None:
    ctx = make_context(github_env, clock=clock)
    result = await make_service(ctx, github=github_client(http_session, ctx)).run()

    assert result.ok and result.recorded
    (run,) = await events(ctx, "COORDINATION_RUN_COMPLETED")
    assert run.stream_id == "conductor-e:coordination"
    data = run.data
    assert data["runId"] == result.run_id
    assert sorted(data["approved"]) == ["acme/api#1", "acme/api#2", "acme/web#3"]
    assert data["github"] == "ok" and data["githubFound"] == 3
    assert data["githubRequests"] == result.github_requests > 0
    assert data["queueDepth"] == {"critical": 1, "high": 1, "normal": 1}
    assert data["healthOk"] is True and data["health"]["postgres"] is True
    assert data["summary"] == "posted" and data["summariesPosted"] == 1
    assert data["appended"] == 4  # three approvals and the summary record
    assert data["modelCalls"] == 0 and data["costUsd"] == 0
    assert data["durationMs"] >= 0 and data["errors"] == [] and "error" not in data
    line = format_line(result)
    assert "\n" not in line
    assert line.startswith("coordination ok in ")
    assert "github 3 found, 3 approved, 0 withdrawn, 0 reprioritised in " in line
    assert "queue 3 (1 critical, 1 high, 1 normal)" in line
    assert "summary posted (template)" in line and "4 events appended" in line


async def test_a_github_refusal_fails_the_run_but_the_rest_still_happens(
    make_context: Callable[..., AppContext],
    github_env: dict[str, str],
    github_fake: FakeGitHub,
    webhook: FakeWebhook,
    http_session: aiohttp.ClientSession,
    make_service: Callable[..., CoordinationService],
) -> None:
    ctx = make_context({**github_env, "GITHUB_TOKEN": "ghp_wrong_token_000000000000"})
    await approve(ctx, "acme/api", 50)

    result = await make_service(ctx, github=github_client(http_session, ctx)).run()

    assert not result.ok and result.exit_code == 1 and result.github == "incomplete"
    assert result.errors[0].startswith("GitHub sync incomplete: ")
    assert "401 Bad credentials" in result.errors[0]
    assert "ghp_wrong_token" not in " ".join(result.errors)
    # The rest of the run still happened: the summary is out, the run is on record.
    assert result.summary == "posted" and len(webhook.messages) == 1
    (run,) = await events(ctx, "COORDINATION_RUN_FAILED")
    assert run.data["github"] == "incomplete" and run.data["errors"] == result.errors
    assert run.data["error"].startswith("GitHub sync incomplete: ")  # quoted by #admin
    line = format_line(result)
    assert line.startswith("coordination FAILED in ") and "GitHub sync incomplete" in line

    # A rejected token stops the GitHub sync alone, until a restart: the next run does not
    # knock again and says why, the rest of it still runs.
    state = ctx.components.get("github")
    assert state is not None and state.status == "stopped"
    assert state.error is not None and "GITHUB_TOKEN" in state.error
    searches = len(github_fake.searches())
    again = await make_service(ctx, github=github_client(http_session, ctx)).run()
    assert again.github == "stopped" and len(github_fake.searches()) == searches
    assert again.errors == [f"GitHub sync stopped: {state.error}"]
    assert again.recorded and "github stopped" in format_line(again)


async def test_a_dry_run_appends_nothing_posts_nothing_and_prints_the_summary(
    make_context: Callable[..., AppContext],
    github_env: dict[str, str],
    github_fake: FakeGitHub,
    webhook: FakeWebhook,
    http_session: aiohttp.ClientSession,
    make_service: Callable[..., CoordinationService],
) -> None:
    ctx = make_context(github_env)
    await approve(ctx, "acme/api", 7, "high")
    head = await ctx.store.head_position()

    result = await make_service(ctx, github=github_client(http_session, ctx)).run(dry_run=True)

    assert result.ok and result.dry_run and result.summary == "printed"
    assert result.summary_text is not None and "Queue: 1 (1 high)" in result.summary_text
    assert await ctx.store.head_position() == head
    assert webhook.requests == [] and github_fake.searches() == []
    assert result.github == "skipped"
    assert any("GitHub sync skipped" in note for note in result.notes)
    assert await ctx.state.get("coordination.summary") is None
    line = format_line(result)
    assert line.startswith("coordination dry run ok in ") and "nothing appended" in line


async def test_a_database_that_is_gone_gives_a_failed_result_not_an_exception(
    database_url: str,
    make_context: Callable[..., AppContext],
    env: dict[str, str],
    http_session: aiohttp.ClientSession,
    webhook: FakeWebhook,
    make_service: Callable[..., CoordinationService],
) -> None:
    from bot.settings import load_settings

    pool = await create_pool(database_url, max_size=2)
    await pool.close()
    settings = load_settings({"CONDUCTOR_DATA_DIR": "/nonexistent", **env})
    ctx = AppContext.build(settings, database_url, pool, http_session)

    result = await make_service(ctx).run()

    assert not result.ok and result.exit_code == 1 and not result.recorded
    assert result.errors == [
        "could not take the run lock: PostgreSQL is unavailable: InterfaceError"
    ]
    assert format_line(result).startswith("coordination FAILED in ")
    assert webhook.requests == []


class BlipSyncer:
    """Stands in for the GitHub step and, while the run holds its lock, drops every other
    connection to the database, as a PostgreSQL restart or failover would."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.blips = 1

    async def run(self) -> SyncResult:
        if self.blips:
            self.blips -= 1
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await conn.close()
        return SyncResult()


async def test_a_database_blip_mid_run_never_raises_and_the_next_run_recovers(
    database_url: str,
    ctx: AppContext,
    webhook: FakeWebhook,
    make_service: Callable[..., CoordinationService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await approve(ctx, "acme/api", 1)
    service = make_service(ctx)
    service.syncer = BlipSyncer(database_url)

    caplog.set_level(logging.WARNING, logger="store.locks")

    first = await service.run()  # must return, whatever the blip broke
    second = await service.run()

    # The blip took the run's own lock session with it (the server dropped the lock too).
    assert "could not release advisory lock 7166003" in caplog.text
    assert first.recorded and not any("lock" in e for e in first.errors)
    assert second.ok, second.errors
    assert len(webhook.messages) == 1
    assert len(await events(ctx, "SUMMARY_POSTED")) == 1
    assert first.run_id != second.run_id


class UnreachableGitHub:
    async def run(self) -> SyncResult:
        raise GitHubUnavailable("GitHub did not answer in time")


async def test_a_sync_that_raises_fails_the_run_and_the_summary_still_goes_out(
    ctx: AppContext, webhook: FakeWebhook, make_service: Callable[..., CoordinationService]
) -> None:
    service = make_service(ctx)
    service.syncer = UnreachableGitHub()

    result = await service.run()

    assert result.github == "failed" and result.exit_code == 1
    assert result.errors == ["GitHub sync failed: GitHub did not answer in time"]
    assert len(webhook.messages) == 1
    assert len(await events(ctx, "COORDINATION_RUN_FAILED")) == 1
