"""Usage on a chosen past day, for tests of costs, charts and the dashboard."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import asyncpg

from store.catalogue import validate


async def record_usage_on(
    pool: asyncpg.Pool,
    day: date,
    agent: str,
    model: str = "claude-haiku-4-5",
    *,
    raw: bool = False,
    **fields: Any,
) -> None:
    """Record one TOKEN_USAGE event dated `day`, projected by the store's own function.

    The append path stamps events with the server's clock; to put usage on past days the event
    row is inserted with its recorded_at and then projected with conductor_project, exactly
    what an append does after its insert. `raw` stores the payload as given, unvalidated: the
    agent runtime's `repo: ""`, `issueNumber: 0` and `model: ""`.
    """
    payload = {"agentId": agent, "model": model, "inputTokens": 0, "outputTokens": 0, **fields}
    if not raw:
        payload = validate("TOKEN_USAGE", payload)
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
