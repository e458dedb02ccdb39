"""Wire-test harness: the real ConductorBot, connected to the fake Discord, on a real database.

`start_bot(env=..., **bot_options)` logs a bot in against the fake (REST through
CONDUCTOR_DISCORD_API_URL, the gateway from the fake's /gateway/bot) and waits until it is
ready. Every test using it fails at teardown if the bot sent a request that breaks Discord's
OpenAPI schema or hit an endpoint the fake does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bot.client import ConductorBot
from bot.context import AppContext
from bot.wiring import Services
from store import catalogue
from store.events import AppendResult, NewEvent
from tests.fakes.discord import FakeDiscord, FakeInteraction

ADMIN_ROLE = 500_000_000_000_000_001
DEV_ROLE = 500_000_000_000_000_002
ADMIN_USER = 600_000_000_000_000_009
USER = 600_000_000_000_000_001
OTHER_USER = 600_000_000_000_000_002
TASKS_CHANNEL = 700_000_000_000_000_101
ADMIN_CHANNEL = 700_000_000_000_000_102
OTHER_GUILD = 700_000_000_000_000_999
START_TIMEOUT = 15.0


@dataclass
class Harness:
    fake: FakeDiscord
    bot: ConductorBot
    context: AppContext
    task: asyncio.Task[None]

    async def invoke(
        self, name: str, options: dict[str, Any] | None = None, **kw: Any
    ) -> FakeInteraction:
        return await self.fake.invoke(name, options, **kw)

    async def reply(
        self, name: str, options: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Run a command and return the message the user sees."""
        interaction = await self.fake.invoke(name, options, **kw)
        return await interaction.reply()

    async def press(
        self, message: dict[str, Any], custom_id: str, *, user_id: int, timeout: float = 5.0
    ) -> FakeInteraction:
        """Press a button once discord.py tracks the message's view.

        discord.py registers a view when the request that sent it returns, a moment after the
        fake has seen the message; a press in between is dropped (a person cannot press that
        fast; a test can). Reads discord.py's private view store, the one place tests do.
        """
        store = self.bot._connection._view_store
        await self.fake.wait_for(lambda: store.is_message_tracked(int(message["id"])), timeout)
        return await self.fake.press(message, custom_id, user_id=user_id)

    async def append(self, event_type: str, **payload: Any) -> AppendResult:
        """Append an event through the real path (validated as Conductor-E records it)."""
        data = catalogue.validate(event_type, payload, internal=True)
        stream = catalogue.stream_for(event_type, data)
        return await self.context.store.append(
            stream, [NewEvent(event_type, data, {"source": "test"})]
        )

    async def approve(
        self, repo: str, number: int, *, title: str | None = None, priority: str = "normal"
    ) -> AppendResult:
        return await self.append(
            "ISSUE_APPROVED",
            repo=repo,
            issueNumber=number,
            title=title or f"Issue {number}",
            url=f"https://github.com/{repo}/issues/{number}",
            priority=priority,
        )


def fake_env(fake: FakeDiscord) -> dict[str, str]:
    return {
        "DISCORD_BOT_TOKEN": fake.token,
        "CONDUCTOR_DISCORD_API_URL": fake.api_url,
        "CONDUCTOR_GUILD_ID": str(fake.guild_id),
        "CONDUCTOR_ADMIN_ROLE_IDS": str(ADMIN_ROLE),
        "CONDUCTOR_ADMIN_USER_IDS": str(ADMIN_USER),
        # The loop's own tests turn it on; elsewhere a run would add events and alerts.
        "CONDUCTOR_LOOP_ENABLED": "false",
    }


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(
        role_ids={"admins": ADMIN_ROLE, "devs": DEV_ROLE},
        channel_ids={
            "conductor-e": 700_000_000_000_000_100,
            "tasks": TASKS_CHANNEL,
            "admin": ADMIN_CHANNEL,
        },
    )
    await fake.start()
    yield fake
    await fake.close()


StartBot = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def start_bot(
    make_context: Callable[..., AppContext], fake_discord: FakeDiscord
) -> AsyncIterator[StartBot]:
    """Start a ConductorBot against the fake; several may be started one after another."""
    started: list[Harness] = []

    async def start(env: dict[str, str] | None = None, **options: Any) -> Harness:
        context = make_context({**fake_env(fake_discord), **(env or {})})
        options.setdefault("guild_ready_timeout", 0.0)
        options.setdefault("presence_interval", 0.05)
        options.setdefault("alert_retry_delay", 0.01)
        bot = ConductorBot(Services.build(context), **options)
        await bot.login(fake_discord.token)  # runs setup_hook: extensions, sync, background
        task = asyncio.create_task(bot.connect(reconnect=True), name="test-bot")
        ready = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait(
            [task, ready], timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            await bot.close()
            if task in done:
                task.result()
            raise AssertionError("the bot did not become ready")
        harness = Harness(fake_discord, bot, context, task)
        started.append(harness)
        return harness

    yield start
    for harness in started:
        await stop(harness)
    assert fake_discord.schema_errors == [], fake_discord.schema_errors
    assert fake_discord.unhandled == [], fake_discord.unhandled


async def stop(harness: Harness) -> None:
    """Close a bot (idempotent). Bounded: a bot caught mid-reconnect on a loaded machine is
    cancelled rather than left to hang the teardown."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(harness.bot.close(), 10)
    if not harness.task.done():
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(harness.task), 10)
    if not harness.task.done():
        harness.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await harness.task


@pytest.fixture
async def harness(start_bot: StartBot) -> Harness:
    """A ready bot with alerts going to #tasks and #admin."""
    return await start_bot(
        {
            "CONDUCTOR_TASKS_CHANNEL_ID": str(TASKS_CHANNEL),
            "CONDUCTOR_ADMIN_CHANNEL_ID": str(ADMIN_CHANNEL),
            "CONDUCTOR_ISSUE_THREADS": "true",
        }
    )
