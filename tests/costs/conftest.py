"""Fixtures for the cost tests: a context over a real database whose projections have the cost
readers, usage recorded on chosen days, and the fake Anthropic API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, time
from typing import Any

import asyncpg
import pytest

from bot.context import AppContext
from tests.fakes.anthropic import FakeAnthropic
from tests.usage import record_usage_on

TODAY = date(2026, 3, 10)
NOW = datetime.combine(TODAY, time(15, 0), UTC)


@pytest.fixture
def cost_context(
    make_context: Callable[..., AppContext], pool: asyncpg.Pool
) -> Callable[..., AppContext]:
    """An AppContext at NOW (unless `clock` is given)."""

    def build(env: dict[str, str] | None = None, **kwargs: Any) -> AppContext:
        kwargs.setdefault("clock", lambda: NOW)
        return make_context(env, **kwargs)

    return build


UsageWriter = Callable[..., Awaitable[None]]


@pytest.fixture
def record_usage(pool: asyncpg.Pool) -> UsageWriter:
    """Record one TOKEN_USAGE event on a chosen day (see tests.usage.record_usage_on)."""

    async def write(day: date, agent: str, model: str, **fields: Any) -> None:
        await record_usage_on(pool, day, agent, model, **fields)

    return write


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(clock=lambda: datetime.now(UTC)) as fake:
        yield fake
