"""Stuck work with a controllable clock: AGENT_STUCK once per episode, requeue, escalation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bot.context import AppContext
from bot.services.coordination.loop import CoordinationService
from bot.services.coordination.stuck import StuckDetector
from store.errors import DatabaseUnavailableError
from store.events import NewEvent
from tests.coordination.conftest import Clock, approve, events, record, start_work

REPO = "acme/api"


async def test_in_progress_idle_31_minutes_is_stuck_once_and_goes_back_to_the_queue(
    ctx: AppContext, clock: Clock, make_service: Callable[..., CoordinationService]
) -> None:
    await start_work(ctx, REPO, 7, "dev-e-1")
    service = make_service(ctx)

    clock.later(minutes=29)
    early = await service.run()
    assert early.ok and early.stuck == []
    assert await events(ctx, "AGENT_STUCK") == []

    clock.later(minutes=31)
    first = await service.run()

    assert first.ok, first.errors
    assert first.stuck == ["acme/api#7"] and first.requeued == ["acme/api#7"]
    (stuck,) = await events(ctx, "AGENT_STUCK")
    assert stuck.stream_id == "dev-e-1"
    assert stuck.data["agentId"] == "dev-e-1"
    assert stuck.data["repo"] == REPO and stuck.data["issueNumber"] == 7
    assert "no work event on acme/api#7 for 31 min" in stuck.data["reason"]
    assert stuck.metadata == {"actor": "conductor-e", "source": "stuck-detection"}
    (unassigned,) = await events(ctx, "ISSUE_UNASSIGNED")
    assert unassigned.data["agentId"] == "dev-e-1"
    assert "attempt 1 of 2 failed" in unassigned.data["reason"]
    issue = await ctx.projections.issue("acme/api#7")
    assert issue is not None and issue.state == "queued" and issue.assignee is None
    assert [i.stream_id for i in await ctx.projections.queue()] == ["acme/api#7"]

    clock.advance(minutes=5)
    second = await service.run()

    assert second.ok and second.stuck == []
    assert len(await events(ctx, "AGENT_STUCK")) == 1
    assert len(await events(ctx, "ISSUE_UNASSIGNED")) == 1


async def test_an_assigned_issue_whose_agent_never_started_is_stuck_too(
    ctx: AppContext, clock: Clock
) -> None:
    await approve(ctx, REPO, 8)
    await record(ctx, "ISSUE_ASSIGNED", repo=REPO, issueNumber=8, agentId="dev-e-2")

    clock.later(minutes=31)
    report = await StuckDetector(ctx).run(clock())

    assert report.stuck == ["acme/api#8"] and report.requeued == ["acme/api#8"]


async def test_two_detectors_racing_on_one_episode_record_it_once(
    ctx: AppContext, clock: Clock
) -> None:
    # Without the run lock (say, an old pod), the idempotency keys still hold.
    await start_work(ctx, REPO, 9, "dev-e-1")
    clock.later(minutes=45)

    reports = await asyncio.gather(*(StuckDetector(ctx).run(clock()) for _ in range(4)))

    assert len(await events(ctx, "AGENT_STUCK")) == 1
    assert len(await events(ctx, "ISSUE_UNASSIGNED")) == 1
    assert sum(len(r.recorded) for r in reports) == 1


async def test_a_crash_between_the_alert_and_the_requeue_repeats_neither(
    ctx: AppContext, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await start_work(ctx, REPO, 9, "dev-e-1")
    clock.later(minutes=45)
    real_append = ctx.store.append
    failures = {"ISSUE_UNASSIGNED": 1}

    async def flaky_append(stream_id: str, new_events: list[NewEvent], **kw: Any) -> Any:
        kind = new_events[0].type
        if failures.get(kind):
            failures[kind] -= 1
            raise DatabaseUnavailableError("PostgreSQL is unavailable: ConnectionResetError")
        return await real_append(stream_id, new_events, **kw)

    monkeypatch.setattr(ctx.store, "append", flaky_append)
    with pytest.raises(DatabaseUnavailableError):
        await StuckDetector(ctx).run(clock())
    assert len(await events(ctx, "AGENT_STUCK")) == 1
    assert await events(ctx, "ISSUE_UNASSIGNED") == []

    report = await StuckDetector(ctx).run(clock())  # the same episode, judged again

    assert report.requeued == ["acme/api#9"] and report.recorded == []
    assert len(await events(ctx, "AGENT_STUCK")) == 1
    assert len(await events(ctx, "ISSUE_UNASSIGNED")) == 1


async def test_in_review_21_minutes_without_a_review_blames_the_reviewer(
    ctx: AppContext, clock: Clock
) -> None:
    await start_work(ctx, REPO, 10, "dev-e-1")
    await record(ctx, "PR_CREATED", repo=REPO, issueNumber=10, prNumber=110)
    await record(ctx, "REVIEW_ASSIGNED", repo=REPO, issueNumber=10, agentId="review-e-1")
    detector = StuckDetector(ctx)

    clock.later(minutes=19)
    assert (await detector.run(clock())).stuck == []

    clock.later(minutes=21)
    report = await detector.run(clock())

    assert report.stuck == ["acme/api#10"]
    (stuck,) = await events(ctx, "AGENT_STUCK")
    assert stuck.stream_id == "review-e-1"
    assert "no review event on acme/api#10 for 21 min" in stuck.data["reason"]
    assert stuck.data["kind"] == "in_review"


async def test_a_pr_no_reviewer_claimed_is_reported_but_blames_no_agent(
    ctx: AppContext, clock: Clock
) -> None:
    await start_work(ctx, REPO, 11, "dev-e-1")
    await record(ctx, "PR_CREATED", repo=REPO, issueNumber=11, prNumber=111)

    clock.later(minutes=25)
    report = await StuckDetector(ctx).run(clock())

    assert report.stuck == [] and report.awaiting_review == ["acme/api#11"]
    assert await events(ctx, "AGENT_STUCK", "ISSUE_UNASSIGNED", "ESCALATED") == []


async def test_an_agent_whose_heartbeats_stopped_while_holding_an_issue_is_stuck(
    make_context: Callable[..., AppContext], env: dict[str, str], clock: Clock
) -> None:
    ctx = make_context({**env, "CONDUCTOR_HEARTBEAT_INTERVAL_SECONDS": "60"}, clock=clock)
    await start_work(ctx, REPO, 12, "dev-e-1")
    await record(
        ctx, "HEARTBEAT", agentId="dev-e-1", status="working", currentRepo=REPO, currentIssue=12
    )
    # Another agent holds an issue but never sent a heartbeat: not judged by heartbeats.
    await start_work(ctx, REPO, 13, "dev-e-2")
    # A third heartbeats, goes quiet, and holds nothing.
    await record(ctx, "HEARTBEAT", agentId="dev-e-3", status="idle")

    clock.later(minutes=2)  # within 3 × 60 s: fine
    assert (await StuckDetector(ctx).run(clock())).stuck == []

    clock.later(minutes=4)  # heartbeats stale, well before the 30-minute work limit
    report = await StuckDetector(ctx).run(clock())

    assert report.stuck == ["acme/api#12"]
    (stuck,) = await events(ctx, "AGENT_STUCK")
    assert stuck.data["agentId"] == "dev-e-1" and stuck.data["kind"] == "stale_heartbeat"
    assert "dev-e-1 stopped sending heartbeats 4 min ago" in stuck.data["reason"]


async def test_the_second_failed_attempt_escalates_and_a_requeue_starts_the_count_again(
    ctx: AppContext, clock: Clock, make_service: Callable[..., CoordinationService]
) -> None:
    await start_work(ctx, REPO, 20, "dev-e-1")
    service = make_service(ctx)

    clock.later(minutes=31)
    first = await service.run()
    assert first.requeued == ["acme/api#20"] and first.escalated == []

    # Another agent takes it and gets stuck too: attempt 2 of 2.
    await record(ctx, "ISSUE_ASSIGNED", repo=REPO, issueNumber=20, agentId="dev-e-2")
    await record(ctx, "WORK_STARTED", repo=REPO, issueNumber=20, agentId="dev-e-2")
    clock.later(minutes=31)
    second = await service.run()

    assert second.ok, second.errors
    assert second.escalated == ["acme/api#20"] and second.requeued == []
    (escalated,) = await events(ctx, "ESCALATED")
    assert "attempt 2 of 2 failed" in escalated.data["reason"]
    assert "until a person requeues it" in escalated.data["reason"]
    assert [e.stream_id for e in await events(ctx, "AGENT_STUCK")] == ["dev-e-1", "dev-e-2"]
    issue = await ctx.projections.issue("acme/api#20")
    assert issue is not None and issue.state == "failed" and issue.escalated
    assert await ctx.projections.queue() == []
    assert await ctx.store.claim("issue", "dev-e-3", {}) is None  # out of the queue

    clock.advance(minutes=40)
    third = await service.run()
    assert third.stuck == [] and len(await events(ctx, "ESCALATED")) == 1

    # A person requeues it: the attempts start again, so the next failure requeues.
    await record(ctx, "ISSUE_REQUEUED", repo=REPO, issueNumber=20, reason="flaky CI fixed")
    claim = await ctx.store.claim("issue", "dev-e-3", {})
    assert claim is not None and claim.stream_id == "acme/api#20"
    clock.later(minutes=31)
    fourth = await service.run()

    assert fourth.requeued == ["acme/api#20"] and fourth.escalated == []
    assert len(await events(ctx, "ESCALATED")) == 1


async def test_max_attempts_is_configurable(
    make_context: Callable[..., AppContext], env: dict[str, str], clock: Clock
) -> None:
    ctx = make_context(
        {**env, "CONDUCTOR_MAX_ATTEMPTS": "1", "CONDUCTOR_STUCK_IN_PROGRESS_MINUTES": "10"},
        clock=clock,
    )
    await start_work(ctx, REPO, 30, "dev-e-1")

    clock.later(minutes=11)
    report = await StuckDetector(ctx).run(clock())

    assert report.escalated == ["acme/api#30"]


async def test_a_dry_run_judges_but_records_nothing(
    ctx: AppContext, clock: Clock, make_service: Callable[..., CoordinationService]
) -> None:
    await start_work(ctx, REPO, 40, "dev-e-1")
    head = await ctx.store.head_position()
    clock.later(minutes=31)

    result = await make_service(ctx).run(dry_run=True)

    assert result.ok and result.stuck == ["acme/api#40"] and result.requeued == []
    assert await ctx.store.head_position() == head
