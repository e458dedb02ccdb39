"""Fixtures for the cost tests: a context over a real database whose projections have the cost
readers, usage recorded on chosen days, and the fake Anthropic API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, time
from typing import Any

import asyncpg
import pytest

from bot.context import AppContext
from store.catalogue import validate
from tests.fakes.anthropic import FakeAnthropic

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
    """Record one TOKEN_USAGE event on a chosen day, projected by the store's own function.

    The append path stamps events with the server's clock; to put usage on past days the event
    row is inserted with its recorded_at and then projected with conductor_project, exactly
    what an append does after its insert.
    """

    async def write(day: date, agent: str, model: str, **fields: Any) -> None:
        payload = validate(
            "TOKEN_USAGE",
            {"agentId": agent, "model": model, "inputTokens": 0, "outputTokens": 0, **fields},
        )
        async with pool.acquire() as conn, conn.transaction():
            position = await conn.fetchval(
                "INSERT INTO events (stream_id, version, type, data, recorded_at) "
                "VALUES ($1, (SELECT coalesce(max(version), 0) + 1 FROM events "
                "WHERE stream_id = $1), 'TOKEN_USAGE', $2, $3) RETURNING position",
                agent,
                payload,
                datetime.combine(day, time(12, 0), UTC),
            )
            await conn.execute(
                "SELECT conductor_project(e) FROM events e WHERE e.position = $1", position
            )

    return write


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(clock=lambda: datetime.now(UTC)) as fake:
        yield fake
