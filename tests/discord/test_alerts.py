"""Live alerts: the right channel, threads, retries, exactly once across restarts."""

from __future__ import annotations

from typing import Any

from bot.services.alerts import POSITION_KEY
from tests.discord.conftest import ADMIN_CHANNEL, TASKS_CHANNEL, Harness, StartBot, stop
from tests.waiting import wait_until

ALERT_ENV = {
    "CONDUCTOR_TASKS_CHANNEL_ID": str(TASKS_CHANNEL),
    "CONDUCTOR_ADMIN_CHANNEL_ID": str(ADMIN_CHANNEL),
    "CONDUCTOR_ISSUE_THREADS": "true",
}


async def posted(harness: Harness, channel: int, count: int) -> list[dict]:
    fake = harness.fake
    await fake.wait_for(lambda: len(fake.channel_messages(channel)) >= count, timeout=10)
    return fake.channel_messages(channel)


async def test_assignment_goes_to_tasks_with_a_thread(harness: Harness) -> None:
    await harness.approve("acme/api", 5, title="Fix login")
    await harness.append("ISSUE_ASSIGNED", repo="acme/api", issueNumber=5, agentId="dev-e-1")
    [message] = await posted(harness, TASKS_CHANNEL, 1)
    assert message["content"] == "📋 `acme/api#5` — Fix login was assigned to **dev-e-1**."
    await harness.fake.wait_for(lambda: bool(harness.fake.threads), timeout=5)
    [thread] = harness.fake.threads.values()
    assert thread["name"] == "acme/api#5 Fix login"
    assert thread["parent_id"] == str(TASKS_CHANNEL)


async def test_failures_and_escalations_go_to_admin(harness: Harness) -> None:
    await harness.approve("acme/api", 5)
    await harness.append("HEARTBEAT", agentId="dev-e-1", status="idle")  # not an alert
    await harness.append("ESCALATED", repo="acme/api", issueNumber=5, reason="@everyone look")
    await harness.append("AGENT_STUCK", agentId="dev-e-1", reason="no output for 30m")
    await harness.append("SMOKE_FAILED", repo="acme/api", issueNumber=5, environment="staging")
    await harness.append(
        "BUDGET_THRESHOLD_CROSSED",
        agentId="dev-e-1",
        threshold=80,
        day="2026-03-10",
        spent=8.0,
        budget=10.0,
    )
    messages = await posted(harness, ADMIN_CHANNEL, 4)
    contents = [m["content"] for m in messages]
    assert contents[0].startswith("🚨 `acme/api#5` was escalated")
    assert "@everyone" not in contents[0]  # mentions are defused
    assert contents[1] == "⚠️ Agent **dev-e-1** is stuck: no output for 30m"
    assert contents[2] == "❌ Smoke tests failed on `acme/api#5` in staging."
    assert contents[3] == (
        "💸 Agent **dev-e-1** crossed 80% of its daily budget ($8.00 of $10.00)."
    )
    assert harness.fake.channel_messages(TASKS_CHANNEL) == []
    assert all(m["nonce"].startswith("ce-alert-") for m in messages)


async def test_a_loop_failing_the_same_way_is_said_once_and_its_recovery_too(
    harness: Harness,
) -> None:
    def run(ok: bool, error: str | None = None) -> Any:
        if ok:
            return harness.append("COORDINATION_RUN_COMPLETED", durationMs=10)
        return harness.append("COORDINATION_RUN_FAILED", durationMs=10, error=error)

    await run(True)  # a healthy loop says nothing
    for _ in range(3):
        await run(False, "GitHub sync failed: GitHub answered 502")
    await run(False, "PostgreSQL is unavailable")  # a different failure is news
    await run(True)
    await run(True)
    await harness.append("AGENT_STUCK", agentId="dev-e-1", reason="marker")  # all seen before it

    messages = await posted(harness, ADMIN_CHANNEL, 4)
    assert [m["content"] for m in messages] == [
        "❌ A coordination run failed: GitHub sync failed: GitHub answered 502",
        "❌ A coordination run failed: PostgreSQL is unavailable",
        "✅ Coordination runs complete again.",
        "⚠️ Agent **dev-e-1** is stuck: marker",
    ]


async def test_a_failed_post_is_retried_not_dropped(harness: Harness) -> None:
    fake = harness.fake
    fake.fail("create_message", 403, times=2, channel_id=ADMIN_CHANNEL)  # e.g. permissions fixed
    fake.fail("create_message", 0, times=1, channel_id=ADMIN_CHANNEL)  # then a dropped connection
    await harness.append("AGENT_STUCK", agentId="dev-e-1", reason="first")
    await harness.append("AGENT_STUCK", agentId="dev-e-1", reason="second")
    messages = await posted(harness, ADMIN_CHANNEL, 2)
    assert [m["content"].split(": ")[-1] for m in messages] == ["first", "second"]
    attempts = [r for r in fake.requests if r.operation_id == "create_message"]
    assert len(attempts) == 5


async def test_rate_limits_are_waited_out(harness: Harness) -> None:
    harness.fake.fail("create_message", 429, times=1, retry_after=0.05)
    await harness.append("AGENT_STUCK", agentId="dev-e-1", reason="slow down")
    [message] = await posted(harness, ADMIN_CHANNEL, 1)
    assert message["content"].endswith("slow down")


async def test_nothing_is_posted_twice_after_a_restart(start_bot: StartBot) -> None:
    first = await start_bot(ALERT_ENV)
    await first.append("AGENT_STUCK", agentId="dev-e-1", reason="one")
    await posted(first, ADMIN_CHANNEL, 1)
    await first.fake.wait_for(lambda: first.bot.alerts.delivered == 1)
    await stop(first)

    second = await start_bot(ALERT_ENV)
    await second.append("AGENT_STUCK", agentId="dev-e-1", reason="two")
    messages = await posted(second, ADMIN_CHANNEL, 2)
    assert [m["content"].split(": ")[-1] for m in messages] == ["one", "two"]


async def test_a_crash_between_post_and_position_does_not_post_twice(start_bot: StartBot) -> None:
    first = await start_bot(ALERT_ENV)
    start = await recorded_position(first)
    await first.approve("acme/api", 5, title="Fix login")
    await first.append("ISSUE_ASSIGNED", repo="acme/api", issueNumber=5, agentId="dev-e-1")
    await first.append("AGENT_STUCK", agentId="dev-e-1", reason="one")
    await posted(first, ADMIN_CHANNEL, 1)
    await stop(first)
    # As if the process died after posting but before recording the position.
    await first.context.pool.execute(
        "UPDATE app_state SET value = to_jsonb($1::bigint) WHERE key = $2", start, POSITION_KEY
    )

    second = await start_bot(ALERT_ENV)
    await second.fake.wait_for(lambda: second.bot.alerts.delivered == 2, timeout=10)
    assert len(second.fake.channel_messages(ADMIN_CHANNEL)) == 1
    assert len(second.fake.channel_messages(TASKS_CHANNEL)) == 1
    assert len(second.fake.threads) == 1
    reposts = [r for r in second.fake.requests if r.operation_id == "create_message"]
    assert len(reposts) == 4  # each alert was sent twice; Discord kept one of each


async def test_history_before_the_first_start_is_not_posted(start_bot: StartBot, store) -> None:
    from store.events import NewEvent

    await store.append(
        "dev-e-1",
        [NewEvent("AGENT_STUCK", {"agentId": "dev-e-1", "reason": "old news"}, {})],
    )
    harness = await start_bot(ALERT_ENV)
    await harness.append("AGENT_STUCK", agentId="dev-e-1", reason="new")
    [message] = await posted(harness, ADMIN_CHANNEL, 1)
    assert message["content"].endswith("new")


async def test_presence_shows_the_queue_depth(harness: Harness) -> None:
    fake = harness.fake

    def shown(text: str) -> bool:
        return any(a.get("name") == text for p in fake.presences for a in p.get("activities", []))

    await fake.wait_for(lambda: shown("0 queued issues"), timeout=5)
    await harness.approve("acme/api", 1)
    await fake.wait_for(lambda: shown("1 queued issue"), timeout=5)
    await harness.approve("acme/api", 2)
    await fake.wait_for(lambda: shown("2 queued issues"), timeout=5)


async def recorded_position(harness: Harness) -> int:
    """The alert follower's starting position, once it has recorded it."""
    position = await wait_until(
        lambda: harness.context.state.get(POSITION_KEY),
        ok=lambda position: position is not None,
        timeout=10,
        what="the alert follower to record its position",
        interval=0.01,
    )
    return int(position)
