"""/coordinate run, /coordinate status and the coordination loop inside the bot, on the wire:
real discord.py against the fake Discord, real PostgreSQL, gidgethub against the fake GitHub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.context import AppContext
from bot.wiring import Services
from store.catalogue import COORDINATION_STREAM
from store.locks import COORDINATION_RUN_LOCK, try_run_lock
from tests.discord.conftest import (
    ADMIN_CHANNEL,
    ADMIN_ROLE,
    ADMIN_USER,
    USER,
    Harness,
    StartBot,
)
from tests.discord.helpers import assert_error, break_database, denials, text_of
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import ephemeral
from tests.fakes.github import FakeGitHub

GITHUB_TOKEN = "ghp_wiretest_token_0123456789abcdef"
READY = "agent-ready"
NO_LOOP = {"CONDUCTOR_LOOP_ENABLED": "false"}


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(token=GITHUB_TOKEN) as fake:
        fake.add_issue("acme/api", 1, labels=[READY, "P0"])
        fake.add_issue("acme/api", 2, labels=[READY])
        fake.add_issue("acme/web", 3, labels=[READY, "priority:high"])
        fake.add_issue("acme/web", 4, labels=["bug"])
        yield fake


def github_env(fake: FakeGitHub) -> dict[str, str]:
    return {
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "CONDUCTOR_GITHUB_API_URL": fake.url,
        "CONDUCTOR_MANAGED_REPOS": "acme/api,acme/web",
    }


def cog_of(harness: Harness) -> Any:
    """The loaded CoordinationCog (its module is the extension's own copy, so no isinstance)."""
    cog = harness.bot.get_cog("CoordinationCog")
    assert cog is not None and type(cog).__name__ == "CoordinationCog"
    return cog


def field(reply: dict[str, Any], name: str) -> str:
    fields = {f["name"]: f["value"] for f in reply["embeds"][0].get("fields") or []}
    assert name in fields, sorted(fields)
    return fields[name]


async def run_events(harness: Harness) -> list[Any]:
    return await harness.context.store.read_stream(COORDINATION_STREAM)


async def count(harness: Harness, event_type: str) -> int:
    found = await harness.context.store.read_all(0, 10_000, types=[event_type])
    return len(found)


# --- /coordinate run -------------------------------------------------------------------------


async def test_run_syncs_github_and_shows_what_it_did(
    start_bot: StartBot, github: FakeGitHub
) -> None:
    harness = await start_bot({**github_env(github), **NO_LOOP})

    interaction = await harness.invoke("coordinate run", role_ids=[ADMIN_ROLE])
    assert (await interaction.callback())["type"] == 5  # deferred: a run takes seconds
    reply = await interaction.reply(timeout=15)

    assert ephemeral(reply)
    embed = reply["embeds"][0]
    assert embed["title"] == "Coordination run: ok"
    assert "coordination ok in" in embed["description"]
    assert "github 3 found, 3 approved, 0 withdrawn" in embed["description"]
    assert field(reply, "GitHub").startswith("3 agent-ready found, 3 approved: `acme/api#1`")
    assert field(reply, "Queue") == "3 queued (1 critical, 1 high, 1 normal)"
    assert field(reply, "Summary") == "off"
    # Markdown is escaped in notes (they may quote upstream text): Discord shows "_" here.
    assert "DISCORD\\_WEBHOOK\\_URL is not set" in field(reply, "Notes")
    [run] = await run_events(harness)
    assert run.type == "COORDINATION_RUN_COMPLETED"
    assert embed["footer"]["text"].startswith(f"run {run.data['runId'][:8]} · ")
    assert await count(harness, "ISSUE_APPROVED") == 3
    assert GITHUB_TOKEN not in str(reply)


async def test_the_cog_keeps_one_github_client_so_etags_save_requests(
    start_bot: StartBot, github: FakeGitHub
) -> None:
    harness = await start_bot({**github_env(github), **NO_LOOP})
    first = await harness.reply("coordinate run", user_id=ADMIN_USER)
    assert first["embeds"][0]["title"] == "Coordination run: ok"
    searched = len(github.searches())

    second = await harness.reply("coordinate run", {"share": True}, user_id=ADMIN_USER)

    assert not ephemeral(second)
    assert second["embeds"][0]["title"] == "Coordination run: ok"
    again = github.searches()[searched:]
    assert again and all(r.status == 304 for r in again)  # the ETag cache outlived the run
    assert "0 approved" in second["embeds"][0]["description"]
    assert len(await run_events(harness)) == 2


async def test_run_with_github_failing_is_reported_failed_and_alerted(
    start_bot: StartBot, github: FakeGitHub
) -> None:
    harness = await start_bot(
        {
            **github_env(github),
            **NO_LOOP,
            "GITHUB_TOKEN": "ghp_wrong_token_00000000000000000000",
            "CONDUCTOR_ADMIN_CHANNEL_ID": str(ADMIN_CHANNEL),
        }
    )

    reply = await harness.reply("coordinate run", user_id=ADMIN_USER)

    assert ephemeral(reply)
    embed = reply["embeds"][0]
    assert embed["title"] == "Coordination run: FAILED"
    assert "coordination FAILED in" in embed["description"]
    assert "GitHub sync" in field(reply, "Errors")
    assert "401" in field(reply, "Errors")
    [run] = await run_events(harness)
    assert run.type == "COORDINATION_RUN_FAILED"
    assert await count(harness, "ISSUE_APPROVED") == 0
    fake = harness.fake
    await fake.wait_for(lambda: fake.channel_messages(ADMIN_CHANNEL), timeout=10)
    assert fake.channel_messages(ADMIN_CHANNEL)[0]["content"].startswith(
        "❌ A coordination run failed: GitHub sync"
    )
    assert "ghp_wrong" not in str(reply)


async def test_dry_run_records_nothing_and_shows_the_summary(start_bot: StartBot) -> None:
    harness = await start_bot(NO_LOOP)
    await harness.approve("acme/api", 7, title="Fix login", priority="high")

    reply = await harness.reply("coordinate run", {"dry_run": True}, role_ids=[ADMIN_ROLE])

    embed = reply["embeds"][0]
    assert embed["title"] == "Coordination dry run: ok"
    assert field(reply, "Recorded") == "nothing (dry run)"
    assert "acme/api#7" in field(reply, "The summary it would post")
    assert field(reply, "Health") == "all up"
    assert await run_events(harness) == []


async def test_run_reports_budget_alerts_and_they_reach_admin(start_bot: StartBot) -> None:
    harness = await start_bot(
        {
            **NO_LOOP,
            "CONDUCTOR_AGENT_BUDGETS_USD": "dev-e-1=1",
            "CONDUCTOR_ADMIN_CHANNEL_ID": str(ADMIN_CHANNEL),
        }
    )
    # Haiku at $1 in per million tokens: $1.50 today, past 100% of a $1 budget.
    await harness.append(
        "TOKEN_USAGE",
        agentId="dev-e-1",
        model="claude-haiku-4-5",
        inputTokens=1_500_000,
        outputTokens=0,
    )

    reply = await harness.reply("coordinate run", user_id=ADMIN_USER)

    alerts = field(reply, "Budget alerts").splitlines()
    assert alerts[0].startswith("dev-e-1 has passed 80% of its daily budget: $1.50 of $1.00")
    assert alerts[1].startswith("dev-e-1 has reached its daily budget: $1.50 of $1.00")
    assert await count(harness, "BUDGET_THRESHOLD_CROSSED") == 2
    fake = harness.fake
    await fake.wait_for(lambda: len(fake.channel_messages(ADMIN_CHANNEL)) >= 2, timeout=10)
    contents = [m["content"] for m in fake.channel_messages(ADMIN_CHANNEL)]
    assert contents == [
        "💸 Agent **dev-e-1** crossed 80% of its daily budget ($1.50 of $1.00).",
        "💸 Agent **dev-e-1** crossed 100% of its daily budget ($1.50 of $1.00).",
    ]
    # Thresholds are recorded once a day: the next run raises nothing new.
    again = await harness.reply("coordinate run", user_id=ADMIN_USER)
    assert "Budget alerts" not in text_of(again)
    assert await count(harness, "BUDGET_THRESHOLD_CROSSED") == 2


async def test_run_skipped_while_another_run_holds_the_lock(start_bot: StartBot) -> None:
    harness = await start_bot(NO_LOOP)
    async with try_run_lock(harness.context.pool, COORDINATION_RUN_LOCK) as taken:
        assert taken
        reply = await harness.reply("coordinate run", user_id=ADMIN_USER)
    embed = reply["embeds"][0]
    assert embed["title"] == "Coordination run skipped"
    assert "Another coordination run holds the lock" in embed["description"]
    assert await run_events(harness) == []


async def test_run_with_the_database_down_is_a_failed_run(start_bot: StartBot) -> None:
    harness = await start_bot(NO_LOOP)
    await break_database(harness)
    reply = await harness.reply("coordinate run", user_id=ADMIN_USER)
    assert ephemeral(reply)
    assert reply["embeds"][0]["title"] == "Coordination run: FAILED"
    assert "could not take the run lock" in field(reply, "Errors")


async def test_run_is_for_admins_only(start_bot: StartBot) -> None:
    harness = await start_bot(NO_LOOP)
    reply = await harness.reply("coordinate run", user_id=USER)
    assert_error(reply, "You may not run /coordinate run", "not allowed to run coordinate")
    [denial] = await denials(harness)
    assert denial.data["action"] == "/coordinate run"
    assert await run_events(harness) == []


# --- /coordinate status ----------------------------------------------------------------------


async def test_status_lists_the_last_runs_newest_first(
    start_bot: StartBot, github: FakeGitHub
) -> None:
    harness = await start_bot({**github_env(github), **NO_LOOP})
    ok = await harness.reply("coordinate run", user_id=ADMIN_USER)
    assert ok["embeds"][0]["title"] == "Coordination run: ok"
    github.fail(401, times=100)
    failed = await harness.reply("coordinate run", user_id=ADMIN_USER)
    assert failed["embeds"][0]["title"] == "Coordination run: FAILED"

    reply = await harness.reply("coordinate status", user_id=USER)  # open to everyone

    assert ephemeral(reply)
    embed = reply["embeds"][0]
    lines = embed["description"].splitlines()
    assert lines[0].startswith("The loop is off in this bot (CONDUCTOR_LOOP_ENABLED=false)")
    runs = [line for line in lines if line.startswith(("✅", "❌"))]
    assert len(runs) == 2
    assert runs[0].startswith("❌ <t:") and "github incomplete: 0 found" in runs[0]
    assert runs[1].startswith("✅ <t:") and "github 3 found, 3 approved" in runs[1]
    assert "3 queued (1 critical, 1 high, 1 normal)" in runs[1]
    assert any(line.strip().startswith("↳ GitHub sync") for line in lines)
    assert embed["color"] == 0xE74C3C  # the latest run failed


async def test_status_limit(start_bot: StartBot) -> None:
    harness = await start_bot(NO_LOOP)
    for _ in range(3):
        await harness.reply("coordinate run", user_id=ADMIN_USER)
    reply = await harness.reply("coordinate status", {"limit": 2, "share": True})
    assert not ephemeral(reply)
    runs = [line for line in text_of(reply).splitlines() if line.startswith("✅")]
    assert len(runs) == 2


async def test_status_with_no_run_yet(start_bot: StartBot) -> None:
    harness = await start_bot(NO_LOOP)
    reply = await harness.reply("coordinate status")
    assert "No coordination run recorded yet" in reply["embeds"][0]["description"]


@pytest.mark.parametrize("limit", [0, 26])
async def test_status_bad_limit(start_bot: StartBot, limit: int) -> None:
    harness = await start_bot(NO_LOOP)
    reply = await harness.reply("coordinate status", {"limit": limit})
    assert_error(reply, f"limit must be between 1 and 25, got {limit}")


async def test_status_database_down(start_bot: StartBot) -> None:
    harness = await start_bot(NO_LOOP)
    await break_database(harness)
    assert_error(await harness.reply("coordinate status"), "PostgreSQL is unavailable")


# --- the loop --------------------------------------------------------------------------------

TINY = {"CONDUCTOR_LOOP_ENABLED": "true", "CONDUCTOR_LOOP_INTERVAL_SECONDS": "0.05"}


async def test_the_loop_runs_and_records_each_run(start_bot: StartBot) -> None:
    harness = await start_bot(TINY)
    cog = cog_of(harness)
    assert cog.coordination_loop.is_running()

    await harness.fake.wait_for(lambda: cog.loop_iterations >= 2, timeout=15)

    runs = await run_events(harness)
    assert len(runs) >= 2
    assert {r.type for r in runs} == {"COORDINATION_RUN_COMPLETED"}
    assert cog.last_result is not None and cog.last_result.ok
    reply = await harness.reply("coordinate status")
    assert "The loop runs in this bot every 0.05 seconds; next run <t:" in text_of(reply)


async def test_the_loop_survives_the_database_going_away(start_bot: StartBot) -> None:
    harness = await start_bot(TINY)
    cog = cog_of(harness)
    await harness.fake.wait_for(lambda: cog.loop_iterations >= 1, timeout=15)
    await break_database(harness)
    broken_at = cog.loop_iterations

    # Two more iterations after the break: the first may have been mid-run when it came.
    await harness.fake.wait_for(lambda: cog.loop_iterations >= broken_at + 2, timeout=15)

    assert cog.coordination_loop.is_running()
    result = cog.last_result
    assert result is not None and not result.ok
    assert "could not take the run lock" in result.errors[0]


async def test_a_service_handed_to_the_bot_serves_the_commands_and_the_loop_runs_outside(
    start_bot: StartBot, make_context: Callable[..., AppContext]
) -> None:
    # `conductor-e run` and `bot`: the composition root owns the service and runs the loop
    # beside the bot, so that a Discord outage does not stop it.
    service = Services.build(make_context(TINY)).coordination()
    harness = await start_bot(TINY, coordination=service)
    cog = cog_of(harness)
    assert cog.service is service
    assert cog.coordination_loop.get_task() is None  # the bot's own loop never started

    ran = await harness.reply("coordinate run", user_id=ADMIN_USER)
    assert ran["embeds"][0]["title"] == "Coordination run: ok"
    reply = await harness.reply("coordinate status")
    assert "The loop runs in this process beside the bot, every 0.05 seconds." in text_of(reply)
    assert len(await run_events(harness)) == 1


async def test_the_loop_is_off_when_disabled(start_bot: StartBot) -> None:
    harness = await start_bot({**NO_LOOP, "CONDUCTOR_LOOP_INTERVAL_SECONDS": "0.01"})
    cog = cog_of(harness)
    assert not cog.coordination_loop.is_running()
    assert cog.coordination_loop.get_task() is None  # never started, not merely between runs
    reply = await harness.reply("coordinate status")
    assert "The loop is off in this bot" in text_of(reply)
    assert cog.loop_iterations == 0
    assert await run_events(harness) == []


async def test_the_cog_closes_its_anthropic_client_on_unload(start_bot: StartBot) -> None:
    async with FakeAnthropic() as anthropic:
        harness = await start_bot(
            {
                **NO_LOOP,
                "ANTHROPIC_API_KEY": "sk-ant-api03-wire",
                "ANTHROPIC_BASE_URL": anthropic.url,
            }
        )
        cog = cog_of(harness)
        messages = cog.messages
        assert messages is not None
        sdk = messages._client
        assert not sdk.is_closed()
        await harness.bot.unload_extension("cogs.coordination")
        assert sdk.is_closed()
        assert harness.bot.get_cog("CoordinationCog") is None
