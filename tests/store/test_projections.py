"""Projections: the issue state machine, the queue order, agents, usage, claims, rebuilds."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import asyncpg

from store.database import connect
from store.events import EventStore, NewEvent
from store.projections import Projections, projection_snapshot, rebuild_projections

REPO = "acme/app"


def ev(event_type: str, number: int | None = None, **data: object) -> NewEvent:
    if number is not None:
        data = {"repo": REPO, "issueNumber": number, **data}
    return NewEvent(event_type, dict(data))


async def put(store: EventStore, number: int, event_type: str, **data: object) -> None:
    await store.append(f"{REPO}#{number}", [ev(event_type, number, **data)])


async def test_an_issue_walks_its_lifecycle(store: EventStore, projections: Projections) -> None:
    steps = [
        ("ISSUE_APPROVED", {"title": "Fix it", "priority": "high"}, "queued"),
        ("ISSUE_ASSIGNED", {"agentId": "dev-e-1"}, "assigned"),
        ("WORK_STARTED", {"agentId": "dev-e-1"}, "in_progress"),
        ("PR_CREATED", {"prNumber": 40}, "in_review"),
        ("CI_PASSED", {"prNumber": 40}, "in_review"),
        ("REVIEW_ASSIGNED", {"agentId": "review-e-1"}, "in_review"),
        ("REVIEW_PASSED", {"agentId": "review-e-1"}, "in_review"),
        ("MERGED", {"prNumber": 40}, "deploying"),
        ("DEPLOYED_PRODUCTION", {}, "deploying"),
        ("ISSUE_DONE", {}, "done"),
    ]
    for event_type, data, state in steps:
        await put(store, 1, event_type, **data)
        issue = await projections.issue(f"{REPO}#1")
        assert issue is not None
        assert issue.state == state, event_type
    assert issue.title == "Fix it"
    assert (issue.assignee, issue.reviewer, issue.pr_number) == ("dev-e-1", "review-e-1", 40)
    assert (issue.attempt, issue.review_state, issue.priority) == (1, "approved", "high")


async def test_disputes_unassignment_and_escalation(
    store: EventStore, projections: Projections
) -> None:
    await put(store, 2, "ISSUE_APPROVED")
    await put(store, 2, "ISSUE_ASSIGNED", agentId="dev-e-1")
    await put(store, 2, "ISSUE_UNASSIGNED", agentId="dev-e-1")
    issue = await projections.issue(f"{REPO}#2")
    assert (issue.state, issue.assignee, issue.attempt) == ("queued", None, 1)
    await put(store, 2, "ISSUE_ASSIGNED", agentId="dev-e-2")
    await put(store, 2, "PR_CREATED", prNumber=9)
    await put(store, 2, "REVIEW_DISPUTED", agentId="review-e-1")
    issue = await projections.issue(f"{REPO}#2")
    assert (issue.state, issue.review_state, issue.attempt) == (
        "in_progress",
        "changes_requested",
        2,
    )
    await put(store, 2, "ESCALATED", reason="two failed attempts")
    issue = await projections.issue(f"{REPO}#2")
    assert (issue.state, issue.escalated) == ("failed", True)
    assert await projections.queue() == []
    await store.append(f"{REPO}#2", [ev("ISSUE_REQUEUED", 2, reason="a person said so")])
    issue = await projections.issue(f"{REPO}#2")
    assert (issue.state, issue.escalated, issue.assignee) == ("queued", False, None)


async def test_events_that_imply_no_state_create_no_issue(
    store: EventStore, projections: Projections
) -> None:
    await put(store, 5, "CI_PASSED", prNumber=3)
    assert await projections.issue(f"{REPO}#5") is None


async def test_queue_is_priority_then_oldest_first(
    store: EventStore, projections: Projections
) -> None:
    for number, priority in [(1, "normal"), (2, "high"), (3, "critical"), (4, "high"), (5, None)]:
        await put(store, number, "ISSUE_APPROVED", **({"priority": priority} if priority else {}))
    queue = await projections.queue()
    assert [i.number for i in queue] == [3, 2, 4, 1, 5]
    assert await projections.queue_depth() == {"critical": 1, "high": 2, "normal": 2}
    assert await projections.queue_rank(f"{REPO}#4") == 3
    assert await projections.queue_rank(f"{REPO}#3") == 1
    assert await projections.queue_rank(f"{REPO}#99") is None
    await put(store, 1, "PRIORITY_CHANGED", priority="critical")
    # Both critical now: the older approval (#1) goes first.
    assert [i.number for i in await projections.queue(limit=2)] == [1, 3]
    assert [i.number for i in await projections.queue(limit=2, offset=3)] == [4, 5]


async def test_agents_from_heartbeats_with_a_stale_flag(
    store: EventStore, projections: Projections
) -> None:
    await store.append(
        "dev-e-1",
        [ev("HEARTBEAT", agentId="dev-e-1", status="working", currentIssue=12, currentRepo=REPO)],
    )
    (agent,) = await projections.agents(
        now=(await store.read_stream("dev-e-1"))[0].recorded_at, stale_after=timedelta(minutes=3)
    )
    assert (agent.status, agent.current_issue, agent.stale) == ("working", f"{REPO}#12", False)
    later = agent.last_heartbeat + timedelta(minutes=4)
    stale = await projections.agent("dev-e-1", now=later, stale_after=timedelta(minutes=3))
    assert stale is not None and stale.stale


async def test_token_usage_adds_up_per_agent_repo_model_and_issue(
    store: EventStore, projections: Projections
) -> None:
    for tokens in (100, 200):
        await store.append(
            "dev-e-1",
            [
                ev(
                    "TOKEN_USAGE",
                    agentId="dev-e-1",
                    repo=REPO,
                    issueNumber=12,
                    model="claude-haiku-4-5",
                    inputTokens=tokens,
                    outputTokens=10,
                    cacheReadTokens=5,
                    costUsd=0.5,
                )
            ],
        )
    (row,) = await projections.usage()
    assert (row.agent_id, row.repo, row.model, row.events) == (
        "dev-e-1",
        REPO,
        "claude-haiku-4-5",
        2,
    )
    assert (row.input_tokens, row.output_tokens, row.cache_read_tokens) == (300, 20, 10)
    assert float(row.cost_usd) == 1.0
    (by_issue,) = await projections.issue_usage(f"{REPO}#12")
    assert by_issue.input_tokens == 300


async def test_twenty_concurrent_claims_over_five_issues(
    store: EventStore, projections: Projections
) -> None:
    for number in range(1, 6):
        await put(store, number, "ISSUE_APPROVED")
    claims = await asyncio.gather(
        *(store.claim("issue", f"dev-e-{i}", {"actor": f"dev-e-{i}"}) for i in range(20))
    )
    won = [c for c in claims if c is not None]
    assert len(won) == 5
    assert len({c.stream_id for c in won}) == 5
    assert claims.count(None) == 15
    assigned = await projections.issues(state="assigned")
    assert sorted(i.number for i in assigned) == [1, 2, 3, 4, 5]
    assert all(i.attempt == 1 for i in assigned)


async def test_review_claims_take_prs_waiting_for_a_reviewer(
    store: EventStore, projections: Projections
) -> None:
    await put(store, 1, "ISSUE_APPROVED")
    assert await store.claim("review", "review-e-1", {}) is None
    await put(store, 1, "PR_CREATED", prNumber=10)
    claim = await store.claim("review", "review-e-1", {})
    assert claim is not None and claim.stream_id == f"{REPO}#1"
    issue = await projections.issue(f"{REPO}#1")
    assert (issue.state, issue.reviewer) == ("in_review", "review-e-1")
    assert await store.claim("review", "review-e-2", {}) is None


def mixed_events(rng: random.Random, count: int) -> list[tuple[str, NewEvent]]:
    """A plausible mix of lifecycle, heartbeat and usage events over a few issues."""
    lifecycle = [
        ("ISSUE_ASSIGNED", {"agentId": "dev-e-1"}),
        ("WORK_STARTED", {"agentId": "dev-e-1"}),
        ("PR_CREATED", {"prNumber": 7}),
        ("REVIEW_ASSIGNED", {"agentId": "review-e-1"}),
        ("REVIEW_DISPUTED", {}),
        ("ISSUE_UNASSIGNED", {}),
        ("MERGED", {}),
        ("ESCALATED", {"reason": "stuck"}),
        ("ISSUE_REQUEUED", {}),
        ("PRIORITY_CHANGED", {"priority": "critical"}),
        ("ISSUE_DONE", {}),
        ("HUMAN_GATE_TRIGGERED", {"reason": "prod"}),
    ]
    out: list[tuple[str, NewEvent]] = []
    for _ in range(count):
        roll = rng.random()
        number = rng.randint(1, 25)
        agent = f"dev-e-{rng.randint(1, 4)}"
        if roll < 0.2:
            out.append((f"{REPO}#{number}", ev("ISSUE_APPROVED", number, priority="high")))
        elif roll < 0.6:
            kind, data = rng.choice(lifecycle)
            out.append((f"{REPO}#{number}", ev(kind, number, **data)))
        elif roll < 0.8:
            out.append(
                (
                    agent,
                    ev(
                        "HEARTBEAT",
                        agentId=agent,
                        status="working",
                        currentIssue=number,
                        currentRepo=REPO,
                    ),
                )
            )
        else:
            out.append(
                (
                    agent,
                    ev(
                        "TOKEN_USAGE",
                        agentId=agent,
                        repo=REPO,
                        issueNumber=number,
                        model=rng.choice(["claude-haiku-4-5", "claude-sonnet-4-5"]),
                        inputTokens=rng.randint(0, 5000),
                        outputTokens=rng.randint(0, 900),
                        costUsd=round(rng.random(), 4),
                    ),
                )
            )
    return out


async def test_rebuilt_projections_equal_the_live_ones(
    store: EventStore, database_url: str
) -> None:
    rng = random.Random(20261129)
    for stream_id, event in mixed_events(rng, 400):
        await store.append(stream_id, [event])
    await store.claim("issue", "dev-e-9", {})
    conn: asyncpg.Connection = await connect(database_url)
    try:
        live = await projection_snapshot(conn)
        assert live["issues"] and live["agents"] and live["usage_daily"]
        seen: list[int] = []
        replayed = await rebuild_projections(
            conn, batch_size=64, progress=lambda done, total, _: seen.append(done)
        )
        assert replayed == 401
        assert seen[-1] == 401 and len(seen) == 7
        assert await projection_snapshot(conn) == live
    finally:
        await conn.close()


async def test_an_interrupted_rebuild_leaves_the_projections_as_they_were(
    store: EventStore, database_url: str
) -> None:
    for stream_id, event in mixed_events(random.Random(7), 200):
        await store.append(stream_id, [event])
    conn = await connect(database_url)
    try:
        live = await projection_snapshot(conn)
        started = asyncio.Event()

        def progress(done: int, total: int, elapsed: float) -> None:
            started.set()

        task = asyncio.create_task(rebuild_projections(conn, batch_size=10, progress=progress))
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:  # pragma: no cover - the rebuild must not finish before the cancel lands
            raise AssertionError("the rebuild was not interrupted")
        assert await projection_snapshot(conn) == live
    finally:
        await conn.close()
