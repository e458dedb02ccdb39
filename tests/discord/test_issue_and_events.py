"""/issue show and /events recent, on the wire."""

from __future__ import annotations

from tests.discord.conftest import OTHER_GUILD, USER, Harness
from tests.discord.helpers import assert_error, break_database, denials, text_of
from tests.fakes.discord import buttons, ephemeral


async def lifecycle(harness: Harness, number: int = 5) -> None:
    await harness.approve("acme/api", number, title="Fix login", priority="high")
    await harness.append("ISSUE_ASSIGNED", repo="acme/api", issueNumber=number, agentId="dev-e-1")
    await harness.append("WORK_STARTED", repo="acme/api", issueNumber=number, agentId="dev-e-1")
    await harness.append("PR_CREATED", repo="acme/api", issueNumber=number, prNumber=77)


async def test_issue_show_timeline(harness: Harness) -> None:
    await lifecycle(harness)
    reply = await harness.reply("issue show", {"issue": "acme/api#5"})
    assert ephemeral(reply)
    embed = reply["embeds"][0]
    assert embed["title"] == "acme/api#5 — Fix login"
    assert embed["url"] == "https://github.com/acme/api/issues/5"
    types = [line.split("**")[1] for line in embed["description"].splitlines()]
    assert types == ["ISSUE_APPROVED", "ISSUE_ASSIGNED", "WORK_STARTED", "PR_CREATED"]
    assert "PR #77" in embed["description"]
    assert "in progress" in text_of(reply) or "in review" in text_of(reply)


async def test_issue_show_lists_the_runs(harness: Harness) -> None:
    """The agent runtime's execution logs, newest first: agent, model, steps, turns,
    duration, tokens, cost, PR."""
    from bot.services.intake.events import Actor
    from bot.services.intake.execution_logs import ExecutionLogService

    await lifecycle(harness)
    runs = ExecutionLogService(harness.context)
    agent = Actor(name=None, authenticated=False)
    create = {"repo": "acme/api", "issueNumber": 5, "agentId": "dev-e-node", "status": "running"}
    first = await runs.create({**create, "model": "claude-sonnet-4-6"}, agent)
    await runs.add_step(first.id, {"type": "implement", "status": "failed"}, agent)
    await runs.complete(first.id, {"status": "failed"}, agent)
    second = await runs.create({**create, "model": "claude-opus-4-6"}, agent)
    totals = {
        "status": "completed",
        "totalCostUsd": 1.5,
        "totalTurns": 17,
        "totalInputTokens": 1000,
        "totalOutputTokens": 200,
        "cacheReadTokens": 30,
        "cacheCreationTokens": 4,
        "prNumber": 77,
    }
    await runs.complete(second.id, totals, agent)

    reply = await harness.reply("issue show", {"issue": "acme/api#5"})
    (field,) = [f for f in reply["embeds"][0]["fields"] if f["name"].startswith("Runs")]
    newest, oldest = field["value"].splitlines()
    assert newest.startswith("✅ **completed** · dev-e-node · claude-opus-4-6 · 0 steps")
    assert "17 turns" in newest and "took 0s" in newest
    assert "1,234 tokens · $1.50 reported · PR #77" in newest
    assert oldest.startswith("❌ **failed** · dev-e-node · claude-sonnet-4-6 · 1 steps")


async def test_issue_show_long_timeline_pages(harness: Harness) -> None:
    await harness.approve("acme/api", 9)
    for _ in range(30):
        await harness.append(
            "HUMAN_GATE_REMINDER", repo="acme/api", issueNumber=9, details="x" * 8000
        )
    interaction = await harness.invoke("issue show", {"issue": "acme/api#9", "share": True})
    reply = await interaction.reply()
    assert not ephemeral(reply)
    assert reply["embeds"][0]["footer"]["text"] == "Page 1 of 2 · 31 events"
    assert "pager:next" in buttons(reply)
    press = await harness.press(reply, "pager:next", user_id=USER)
    await press.callback()
    assert harness.fake.messages[reply["id"]]["embeds"][0]["footer"]["text"].startswith("Page 2")


async def test_issue_show_unknown(harness: Harness) -> None:
    assert_error(await harness.reply("issue show", {"issue": "acme/api#1"}), "has no events")


async def test_issue_show_bad_reference(harness: Harness) -> None:
    assert_error(await harness.reply("issue show", {"issue": "#12"}), "is not an issue")


async def test_issue_show_database_down(harness: Harness) -> None:
    await break_database(harness)
    assert_error(await harness.reply("issue show", {"issue": "acme/api#1"}), "unavailable")


async def test_issue_show_denied_outside_the_server(harness: Harness) -> None:
    reply = await harness.reply("issue show", {"issue": "acme/api#1"}, guild_id=OTHER_GUILD)
    assert_error(reply, "You may not run /issue show")
    assert [d.data["action"] for d in await denials(harness)] == ["/issue show"]


async def test_issue_show_autocompletes(harness: Harness) -> None:
    await lifecycle(harness, 5)
    await harness.approve("acme/web", 6)
    choices = await harness.fake.autocomplete("issue show", {"issue": "api#"}, "issue")
    assert [c["value"] for c in choices] == ["acme/api#5"]


async def test_events_recent_newest_first(harness: Harness) -> None:
    await lifecycle(harness)
    reply = await harness.reply("events recent", {"limit": 3})
    assert ephemeral(reply)
    lines = reply["embeds"][0]["description"].splitlines()
    assert [line.split("**")[1] for line in lines] == [
        "PR_CREATED",
        "WORK_STARTED",
        "ISSUE_ASSIGNED",
    ]


async def test_events_recent_filtered_by_type(harness: Harness) -> None:
    await lifecycle(harness)
    await harness.append("HEARTBEAT", agentId="dev-e-1", status="working")
    reply = await harness.reply("events recent", {"type": "heartbeat", "share": True})
    assert not ephemeral(reply)
    assert reply["embeds"][0]["title"] == "Recent HEARTBEAT events"
    assert reply["embeds"][0]["description"].count("**HEARTBEAT**") == 1
    assert "ISSUE_" not in reply["embeds"][0]["description"]


async def test_events_recent_long_payloads_page_within_limits(harness: Harness) -> None:
    # 50 events with 8,000-character reasons: the fake rejects anything over Discord's limits.
    await harness.approve("acme/api", 1)
    for _ in range(49):
        await harness.append("ESCALATED", repo="acme/api", issueNumber=1, reason="r" * 8000)
    reply = await harness.reply("events recent", {"limit": 50})
    assert reply["embeds"][0]["footer"]["text"].startswith("Page 1 of 4")
    assert len(reply["embeds"][0]["description"]) <= 4096


async def test_events_recent_empty_store(harness: Harness) -> None:
    reply = await harness.reply("events recent")
    assert "The store has no event yet." in reply["embeds"][0]["description"]


async def test_events_recent_unknown_type(harness: Harness) -> None:
    assert_error(
        await harness.reply("events recent", {"type": "NOPE"}), "'NOPE' is not an event type"
    )


async def test_events_recent_limit_out_of_range(harness: Harness) -> None:
    # Discord enforces min/max in its client; the bot does not rely on it.
    assert_error(await harness.reply("events recent", {"limit": 500}), "between 1 and 50")


async def test_events_recent_database_down(harness: Harness) -> None:
    await break_database(harness)
    assert_error(await harness.reply("events recent"), "PostgreSQL is unavailable")


async def test_events_recent_denied_outside_the_server(harness: Harness) -> None:
    reply = await harness.reply("events recent", guild_id=OTHER_GUILD)
    assert_error(reply, "You may not run /events recent")


async def test_events_recent_autocompletes_types(harness: Harness) -> None:
    choices = await harness.fake.autocomplete("events recent", {"type": "smoke"}, "type")
    assert [c["value"] for c in choices] == ["SMOKE_PASSED", "SMOKE_FAILED"]
