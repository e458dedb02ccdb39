"""Fixtures: the fake GitHub, settings pointing at it, the real gidgethub-based client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.context import AppContext
from bot.integrations.github import GitHubClient, RetryPolicy
from bot.settings import Settings, load_settings
from tests.fakes.github import FakeGitHub

TOKEN = "ghp_test_token_0123456789abcdef"
SECRET = b"webhook-secret-for-tests"


class RecordingSleep:
    """An injected sleep: records each wait, yields to the loop, and never waits on the clock.

    `then` runs after each recorded wait, e.g. to let the fake's rate-limit window pass.
    """

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.then: Callable[[float], None] | None = None

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.then is not None:
            self.then(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(token=TOKEN) as server:
        yield server


@pytest.fixture
def sleeper() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def github_env(fake: FakeGitHub) -> dict[str, str]:
    return {
        "CONDUCTOR_DATA_DIR": "/nonexistent",
        "CONDUCTOR_GITHUB_API_URL": fake.url,
        "GITHUB_TOKEN": TOKEN,
        "CONDUCTOR_GITHUB_WEBHOOK_SECRET": SECRET.decode(),
    }


@pytest.fixture
def make_settings(github_env: dict[str, str]) -> Callable[..., Settings]:
    def build(**env: str) -> Settings:
        return load_settings({**github_env, **env})

    return build


@pytest.fixture
async def client_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_client(
    client_session: aiohttp.ClientSession, sleeper: RecordingSleep
) -> Callable[..., GitHubClient]:
    def build(settings: Settings, **kwargs: Any) -> GitHubClient:
        kwargs.setdefault("policy", RetryPolicy(request_timeout=5.0))
        return GitHubClient(client_session, settings, sleep=sleeper, **kwargs)

    return build


@pytest.fixture
def github_context(
    make_context: Callable[..., AppContext], github_env: dict[str, str]
) -> Callable[..., AppContext]:
    """An AppContext on this test's database whose settings point at the fake GitHub."""

    def build(**env: str) -> AppContext:
        return make_context({**github_env, **env})

    return build
