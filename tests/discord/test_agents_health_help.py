"""/agents, /health, /help and /conductor sync, on the wire."""

from __future__ import annotations

import logging

import pytest

from tests.discord.conftest import (
    ADMIN_ROLE,
    ADMIN_USER,
    OTHER_GUILD,
    USER,
    Harness,
    StartBot,
)
from tests.discord.helpers import assert_error, break_database, denials, text_of
from tests.fakes.discord import ephemeral


async def test_agents_marks_stale_ones(harness: Harness) -> None:
    await harness.append(
        "HEARTBEAT", agentId="dev-e-1", status="working", currentIssue=5, currentRepo="acme/api"
    )
    # An agent known only from a report, never from a heartbeat, is stale.
    await harness.append("AGENT_STUCK", agentId="review-e-1", reason="no progress")
    reply = await harness.reply("agents")
    assert ephemeral(reply)
    lines = reply["embeds"][0]["description"].splitlines()
    fresh = next(line for line in lines if "dev-e-1" in line)
    stale = next(line for line in lines if "review-e-1" in line)
    assert "stale" not in fresh and "working" in fresh and "acme/api#5" in fresh
    assert "**stale**" in stale
    assert "2 agents · 1 stale" in reply["embeds"][0]["footer"]["text"]


async def test_agents_none_yet(harness: Harness) -> None:
    reply = await harness.reply("agents", {"share": True})
    assert not ephemeral(reply)
    assert "No agent has reported yet" in reply["embeds"][0]["description"]


async def test_agents_database_down(harness: Harness) -> None:
    await break_database(harness)
    assert_error(await harness.reply("agents"), "unavailable")


async def test_agents_denied_outside_the_server(harness: Harness) -> None:
    assert_error(await harness.reply("agents", guild_id=OTHER_GUILD), "You may not run /agents")


async def test_health_all_up_is_deferred_then_filled_in(harness: Harness) -> None:
    interaction = await harness.invoke("health")
    assert (await interaction.callback())["type"] == 5  # deferred: upstream checks may be slow
    reply = await interaction.reply()
    assert ephemeral(reply)
    text = text_of(reply)
    assert "all critical components up" in text
    assert "🟢 postgres" in text and "🟢 discord" in text


async def test_health_shows_a_failing_upstream(start_bot: StartBot) -> None:
    harness = await start_bot(
        {"GITHUB_TOKEN": "ghp_" + "x" * 36, "CONDUCTOR_GITHUB_API_URL": "http://127.0.0.1:9"}
    )
    harness.fake.fail("get_gateway", 503)
    reply = await harness.reply("health", {"share": True})
    text = text_of(reply)
    assert not ephemeral(reply)
    assert "all critical components up" in text  # upstreams are not critical
    assert "🟠 github" in text and "unreachable" in text
    assert "🟠 discord" in text and "HTTP 503" in text
    assert "ghp_" not in text


async def test_health_database_down_is_reported_not_an_error(harness: Harness) -> None:
    await break_database(harness)
    reply = await harness.reply("health")
    text = text_of(reply)
    assert "a critical component is down" in text
    assert "🔴 postgres" in text


async def test_health_denied_outside_the_server(harness: Harness) -> None:
    assert_error(await harness.reply("health", guild_id=OTHER_GUILD), "You may not run /health")


async def test_help_lists_only_what_the_caller_may_run(harness: Harness) -> None:
    reply = await harness.reply("help", user_id=USER)
    assert ephemeral(reply)
    text = reply["embeds"][0]["description"]
    for name in ("queue show", "queue why", "issue show", "events recent", "agents", "health"):
        assert f"`/{name}`" in text
    assert "conductor sync" not in text

    owner = await harness.reply("help", user_id=harness.fake.owner_id)
    assert "`/conductor sync`" in owner["embeds"][0]["description"]


async def test_help_denied_outside_the_server(harness: Harness) -> None:
    assert_error(await harness.reply("help", guild_id=OTHER_GUILD), "You may not run /help")


async def test_conductor_sync_forces_a_sync_for_the_owner(harness: Harness) -> None:
    before = harness.fake.command_syncs
    reply = await harness.reply("conductor sync", user_id=harness.fake.owner_id)
    assert ephemeral(reply)
    assert "Synced" in reply["content"]
    assert harness.fake.command_syncs == before + 1


@pytest.mark.parametrize(("user_id", "roles"), [(USER, []), (ADMIN_USER, []), (USER, [ADMIN_ROLE])])
async def test_conductor_sync_is_owner_only_and_denials_are_recorded(
    harness: Harness, user_id: int, roles: list[int]
) -> None:
    before = harness.fake.command_syncs
    reply = await harness.reply("conductor sync", user_id=user_id, role_ids=roles)
    assert_error(reply, "only the bot's owner")
    assert harness.fake.command_syncs == before
    [denial] = await denials(harness)
    assert denial.data == {
        "actor": f"discord:{user_id}",
        "action": "/conductor sync",
        "result": "only the bot's owner may run this",
    }


async def test_conductor_sync_upstream_error(harness: Harness) -> None:
    harness.fake.fail("bulk_set_guild_application_commands", 403)
    reply = await harness.reply("conductor sync", user_id=harness.fake.owner_id)
    assert_error(reply, "Something went wrong")


async def test_unexpected_error_has_a_reference_in_the_reply_and_the_log(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode() -> None:
        raise RuntimeError("password=hunter2 in an unexpected place")

    monkeypatch.setattr(harness.bot.queries, "agents", explode)
    with caplog.at_level(logging.ERROR, logger="bot.tree"):
        reply = await harness.reply("agents", {"share": True})
    ref = assert_error(reply, "Something went wrong")
    assert "hunter2" not in text_of(reply)
    [record] = [r for r in caplog.records if ref in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
