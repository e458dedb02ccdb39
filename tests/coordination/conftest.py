"""Fixtures for the coordination loop: a controllable clock, the fake webhook, fake Anthropic,
fake GitHub, and helpers to put issues into states through real events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bot.context import AppContext
from bot.integrations.anthropic_messages import MessagesClient
from bot.integrations.discord_webhook import DiscordWebhook
from bot.integrations.github import GitHubClient, RetryPolicy
from bot.services.coordination.loop import CoordinationService
from bot.services.coordination.summary import Summariser
from bot.services.github.sync import SyncService
from store import catalogue
from store.events import NewEvent
from tests.coordination.fake_webhook import FakeWebhook
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.services import coordination

GITHUB_TOKEN = "ghp_test_token_0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-api03-test-key-for-the-fake"


class Clock:
    """A clock the test moves. It starts at the wall clock, since the store stamps events
    with PostgreSQL's own now(); moving it forward is how a test lets 31 minutes pass."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def later(self, **delta: float) -> None:
        """Set the clock to the wall clock plus `delta` (events just appended are stamped
        with the wall clock, so this is "that long after them")."""
        self.now = datetime.now(UTC) + timedelta(**delta)


class RecordingSleep:
    """An injected sleep: records each wait and never waits on the wall clock."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeper() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def webhook() -> AsyncIterator[FakeWebhook]:
    async with FakeWebhook() as fake:
        yield fake


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def github_fake() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(token=GITHUB_TOKEN) as fake:
        yield fake


@pytest.fixture
def env(webhook: FakeWebhook) -> dict[str, str]:
    """Settings for a loop that posts to the fake webhook; no model, no GitHub."""
    return {"DISCORD_WEBHOOK_URL": webhook.url}


@pytest.fixture
def ctx(make_context: Callable[..., AppContext], env: dict[str, str], clock: Clock) -> AppContext:
    return make_context(env, clock=clock)


@pytest.fixture
async def messages_clients() -> AsyncIterator[list[MessagesClient]]:
    """MessagesClients made by a test, closed after it."""
    clients: list[MessagesClient] = []
    yield clients
    for client in clients:
        await client.close()


@pytest.fixture
def make_service(
    sleeper: RecordingSleep, messages_clients: list[MessagesClient]
) -> Callable[..., CoordinationService]:
    """A CoordinationService over a context: the webhook from its settings (with the recording
    sleep), a MessagesClient when ANTHROPIC_API_KEY is set, a SyncService over `github`."""

    def build(
        context: AppContext,
        *,
        github: GitHubClient | None = None,
        messages_timeout: float = 5.0,
        **kwargs: Any,
    ) -> CoordinationService:
        settings = context.settings
        messages = None
        if settings.anthropic_api_key is not None:
            messages = MessagesClient.from_settings(
                settings, timeout=messages_timeout, max_retries=0
            )
            messages_clients.append(messages)
        poster = None
        if settings.discord_webhook_url is not None:
            poster = DiscordWebhook(context.http, settings.discord_webhook_url, sleep=sleeper)
        syncer = SyncService(context, github) if github is not None else None
        return coordination(context, syncer, Summariser(context, messages), poster, **kwargs)

    return build


def github_client(session: aiohttp.ClientSession, context: AppContext) -> GitHubClient:
    return GitHubClient(
        session, context.settings, policy=RetryPolicy(request_timeout=5.0), sleep=RecordingSleep()
    )


async def record(context: AppContext, event_type: str, **payload: Any) -> int:
    """Append one event as an agent would; returns its position."""
    data = catalogue.validate(event_type, payload, internal=True)
    stream = catalogue.stream_for(event_type, data)
    result = await context.store.append(stream, [NewEvent(event_type, data, {"actor": "test"})])
    return result.last_position


async def approve(context: AppContext, repo: str, number: int, priority: str = "normal") -> None:
    await record(
        context,
        "ISSUE_APPROVED",
        repo=repo,
        issueNumber=number,
        title=f"Issue {number}",
        priority=priority,
    )


async def start_work(context: AppContext, repo: str, number: int, agent: str) -> None:
    """Approved, assigned to `agent`, work started: the issue is in_progress."""
    await approve(context, repo, number)
    await record(context, "ISSUE_ASSIGNED", repo=repo, issueNumber=number, agentId=agent)
    await record(context, "WORK_STARTED", repo=repo, issueNumber=number, agentId=agent)


async def events(context: AppContext, *types: str) -> list[Any]:
    return await context.store.read_all(0, 100_000, types=list(types) or None)
