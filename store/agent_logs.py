"""The agent runtime's activity log: a bounded history of lines per agent (not events)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from store.errors import unavailable_on_connection_loss

_INSERT = """
INSERT INTO agent_logs (agent_id, ts, level, message, meta)
SELECT $1, ts, level, message, meta
FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::jsonb[]) AS l(ts, level, message, meta)
"""
# Keep the newest `$2` lines of the agent: delete from the first one past them, downwards.
_TRIM = """
DELETE FROM agent_logs
WHERE agent_id = $1
  AND id <= (SELECT id FROM agent_logs WHERE agent_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1)
"""
_RECENT = """
SELECT id, agent_id, ts, level, message, meta, received_at
FROM agent_logs WHERE agent_id = $1 ORDER BY id DESC LIMIT $2
"""


@dataclass(frozen=True)
class AgentLogLine:
    """One line as the runtime sent it: its own timestamp, level and message; the rest is meta
    (repo, issueNumber, ...)."""

    ts: datetime | None
    level: str | None
    message: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class StoredAgentLogLine(AgentLogLine):
    id: int
    agent_id: str
    received_at: datetime


class AgentLogs:
    """Appends and reads agents' log lines, keeping at most `keep` lines per agent."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, agent_id: str, lines: list[AgentLogLine], *, keep: int) -> None:
        """Store the lines (one statement) and drop the agent's oldest beyond `keep`."""
        with unavailable_on_connection_loss():
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    _INSERT,
                    agent_id,
                    [line.ts for line in lines],
                    [line.level for line in lines],
                    [line.message for line in lines],
                    [line.meta for line in lines],
                )
                await conn.execute(_TRIM, agent_id, keep)

    async def recent(self, agent_id: str, limit: int) -> list[StoredAgentLogLine]:
        """The agent's newest lines, newest first."""
        with unavailable_on_connection_loss():
            rows = await self.pool.fetch(_RECENT, agent_id, limit)
        return [
            StoredAgentLogLine(
                ts=row["ts"],
                level=row["level"],
                message=row["message"],
                meta=row["meta"],
                id=row["id"],
                agent_id=row["agent_id"],
                received_at=row["received_at"],
            )
            for row in rows
        ]
