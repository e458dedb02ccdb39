"""Start-up: the gateway from /gateway/bot, extensions, command sync, resume, run_bot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import discord
import pytest
from discord.ext import commands

from bot.client import ConductorBot, discover_extensions, run_bot
from bot.context import AppContext
from bot.wiring import Services
from tests.discord.conftest import Harness, StartBot, fake_env, stop
from tests.fakes.discord import FakeDiscord


async def test_connects_to_the_gateway_named_by_gateway_bot(harness: Harness) -> None:
    fake = harness.fake
    operations = [r.operation_id for r in fake.requests]
    assert operations[:3] == ["get_my_user", "get_my_oauth2_application", "get_bot_gateway"]
    assert fake.identifies == 1
    assert harness.bot.get_guild(fake.guild_id) is not None


async def test_all_cogs_are_loaded_as_extensions(harness: Harness) -> None:
    assert sorted(harness.bot.extensions) == discover_extensions()
    assert {
        "cogs.queue",
        "cogs.issues",
        "cogs.events",
        "cogs.agents",
        "cogs.health",
        "cogs.meta",
    } <= set(harness.bot.extensions)


async def test_commands_sync_only_when_their_definitions_change(start_bot: StartBot) -> None:
    first = await start_bot()
    fake = first.fake
    assert fake.command_syncs == 1
    assert set(fake.commands) == {
        "queue",
        "issue",
        "events",
        "agents",
        "agent",
        "health",
        "help",
        "conductor",
        "cost",
        "keys",
        "coordinate",
        "rollout",
        "flux",
        "pods",
        "logs",
        "audit",
        "merge",
    }
    await stop(first)

    await start_bot()  # same definitions: no sync
    assert fake.command_syncs == 1

    fewer = [name for name in discover_extensions() if name != "cogs.health"]
    await start_bot(extensions=fewer)  # a command went away: sync
    assert fake.command_syncs == 2
    assert "health" not in fake.commands


async def test_a_failing_extension_stops_start_up(
    make_context: Callable[..., AppContext], fake_discord: FakeDiscord
) -> None:
    bot = ConductorBot(
        Services.build(make_context(fake_env(fake_discord))),
        extensions=["cogs.queue", "tests.discord.broken_cog"],
        guild_ready_timeout=0.0,
    )
    with pytest.raises(commands.ExtensionFailed) as failed:
        await bot.login(fake_discord.token)
    await bot.close()
    assert "the broken cog cannot start" in str(failed.value.original)
    assert fake_discord.command_syncs == 0
    assert fake_discord.identifies == 0


async def test_resumes_after_a_dropped_gateway_connection(harness: Harness) -> None:
    fake = harness.fake
    await fake.drop_connection(4000)
    await fake.wait_for(lambda: fake.resumes == 1 and fake.connected, timeout=10)
    assert fake.identifies == 1  # resumed, not re-identified
    reply = await harness.reply("events recent")
    assert reply["embeds"]


async def test_run_bot_runs_until_cancelled_and_closes(
    make_context: Callable[..., AppContext], fake_discord: FakeDiscord
) -> None:
    context = make_context(fake_env(fake_discord))
    task = asyncio.create_task(run_bot(Services.build(context), guild_ready_timeout=0.0))
    await fake_discord.wait_for(lambda: fake_discord.connected, timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake_discord.wait_for(lambda: not fake_discord.connected, timeout=5)


async def test_run_bot_needs_a_token(make_context: Callable[..., AppContext]) -> None:
    with pytest.raises(RuntimeError, match="DISCORD_BOT_TOKEN"):
        await run_bot(Services.build(make_context()))


async def test_a_bot_says_nothing_of_voice_it_never_uses(
    make_context: Callable[..., AppContext],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """discord.py warns once per process that PyNaCl and davey are missing (voice); Conductor-E
    has no voice, so its start-up log does not carry those two lines."""
    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)
    monkeypatch.setattr(discord.VoiceClient, "warn_dave", True)
    with caplog.at_level(logging.WARNING):
        bot = ConductorBot(Services.build(make_context()))
    await bot.close()
    assert "voice" not in caplog.text
