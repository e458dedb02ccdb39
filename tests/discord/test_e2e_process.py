"""End to end: the real `conductor-e bot` process, the fake Discord and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.alerts import POSITION_KEY
from store.events import EventStore, NewEvent
from store.state import AppState
from tests.discord.conftest import TASKS_CHANNEL
from tests.fakes.discord import FakeDiscord, ephemeral
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture
async def bot_process(
    fake_discord: FakeDiscord, database_url: str, tmp_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DISCORD_BOT_TOKEN": fake_discord.token,
        "CONDUCTOR_DISCORD_API_URL": fake_discord.api_url,
        "CONDUCTOR_GUILD_ID": str(fake_discord.guild_id),
        "CONDUCTOR_TASKS_CHANNEL_ID": str(TASKS_CHANNEL),
        "CONDUCTOR_DATA_DIR": str(tmp_path),
        "CONDUCTOR_LOOP_ENABLED": "false",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "bot", env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    yield process
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_the_bot_process_answers_and_alerts(
    bot_process: asyncio.subprocess.Process, fake_discord: FakeDiscord, store: EventStore
) -> None:
    fake = fake_discord
    await fake.wait_for(lambda: fake.connected and "queue" in fake.commands, timeout=60)

    await store.append(
        "acme/api#1",
        [
            NewEvent(
                "ISSUE_APPROVED",
                {"repo": "acme/api", "issueNumber": 1, "title": "Fix login", "priority": "high"},
            )
        ],
    )
    interaction = await fake.invoke("queue show")
    reply = await interaction.reply(timeout=10)
    assert ephemeral(reply)
    assert "`acme/api#1` Fix login" in reply["embeds"][0]["description"]

    # On its first start the alert follower begins at the head it sees: wait until it has
    # recorded that position before appending the assignment.
    state = AppState(store.pool)
    await wait_until(
        lambda: state.get(POSITION_KEY),
        ok=lambda position: position is not None,
        timeout=10,
        what="the alert follower to record its position",
    )
    await store.append(
        "acme/api#1",
        [NewEvent("ISSUE_ASSIGNED", {"repo": "acme/api", "issueNumber": 1, "agentId": "dev-e-1"})],
    )
    await fake.wait_for(lambda: fake.channel_messages(TASKS_CHANNEL), timeout=10)
    assert "dev-e-1" in fake.channel_messages(TASKS_CHANNEL)[0]["content"]

    bot_process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(bot_process.wait(), 30) == 0
    assert bot_process.stderr is not None
    log = (await bot_process.stderr.read()).decode()
    assert fake.token not in log
    assert fake.schema_errors == []
