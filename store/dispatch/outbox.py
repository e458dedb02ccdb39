"""The dispatch outbox: assignments claimed for push, waiting for (or written to) Valkey.

`Outbox.claim` is the pull path's exclusive claim plus the outbox row, in one transaction
(`conductor_dispatch`, store/dispatch/sql/dispatch.sql): an assignment exists as an event and
as a row to send, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from store.errors import unavailable_on_connection_loss
from store.locks import DISPATCH_LEADER_LOCK, closed_when_in_doubt, unlock


@dataclass(frozen=True)
class OutboxEntry:
    """One assignment for an agent's stream: `fields` is the entry as the runtime reads it."""

    assignment_id: int
    token: str  # the assignment's id in the stream entry (`assignmentId`)
    agent_id: str
    stream_id: str
    kind: str
    fields: dict[str, str]
    created_at: datetime
    sent_at: datetime | None
    entry_id: str | None


@dataclass(frozen=True)
class OutboxStats:
    """For /metrics: rows sent, rows waiting, and the age of the oldest waiting one."""

    sent: int
    unsent: int
    oldest_unsent: datetime | None


def _entry(row: asyncpg.Record) -> OutboxEntry:
    return OutboxEntry(
        assignment_id=row["assignment_id"],
        token=str(row["token"]),
        agent_id=row["agent_id"],
        stream_id=row["stream_id"],
        kind=row["kind"],
        fields={str(k): str(v) for k, v in row["fields"].items()},
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        entry_id=row["entry_id"],
    )


class Outbox:
    """The transactional outbox of push dispatch."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def try_lead(self) -> asyncpg.pool.PoolConnectionProxy | None:
        """Take the dispatcher's lock on a connection of its own (kept until `step_down`), or
        None when another process holds it."""
        with unavailable_on_connection_loss():
            conn = await self.pool.acquire()
            try:
                with closed_when_in_doubt(conn):
                    taken = await conn.fetchval(
                        "SELECT pg_try_advisory_lock($1)", DISPATCH_LEADER_LOCK
                    )
                if taken:
                    return conn
            except BaseException:
                await self.pool.release(conn)
                raise
            await self.pool.release(conn)
        return None

    async def step_down(self, conn: asyncpg.pool.PoolConnectionProxy) -> None:
        """Give the lock back, then the connection (closed instead when the unlock fails: a
        broken connection has lost the lock anyway)."""
        try:
            if not conn.is_closed():
                await unlock(conn, DISPATCH_LEADER_LOCK)
        finally:
            await self.pool.release(conn)

    async def claim(
        self,
        kind: str,
        agent_id: str,
        metadata: dict[str, Any],
        *,
        route_keys: Sequence[str] | None,
        unrouted: bool,
    ) -> OutboxEntry | None:
        """Claim the top of `agent_id`'s `issue` or `review` queue (the pull path's claim) and
        record its stream entry to send, atomically; None when nothing waits."""
        with unavailable_on_connection_loss():
            row = await self.pool.fetchrow(
                "SELECT * FROM conductor_dispatch($1, $2, $3, $4, $5)",
                kind,
                agent_id,
                metadata,
                None if route_keys is None else list(route_keys),
                unrouted,
            )
        return None if row is None else _entry(row)

    async def unsent(self, limit: int = 100) -> list[OutboxEntry]:
        """Rows not yet written to Valkey, oldest claim first."""
        with unavailable_on_connection_loss():
            rows = await self.pool.fetch(
                "SELECT * FROM dispatch_outbox WHERE sent_at IS NULL "
                "ORDER BY assignment_id LIMIT $1",
                limit,
            )
        return [_entry(row) for row in rows]

    async def unsent_counts(self) -> dict[str, int]:
        """Rows not yet written, per agent (they count against the agent's depth)."""
        with unavailable_on_connection_loss():
            rows = await self.pool.fetch(
                "SELECT agent_id, count(*) AS n FROM dispatch_outbox WHERE sent_at IS NULL "
                "GROUP BY agent_id"
            )
        return {row["agent_id"]: int(row["n"]) for row in rows}

    async def mark_sent(self, assignment_id: int, entry_id: str) -> None:
        """Record that the row's entry is in the agent's stream."""
        with unavailable_on_connection_loss():
            await self.pool.execute(
                "UPDATE dispatch_outbox SET sent_at = coalesce(sent_at, now()), "
                "entry_id = coalesce(entry_id, $2) WHERE assignment_id = $1",
                assignment_id,
                entry_id,
            )

    async def cancel(self, assignment_id: int) -> None:
        """Close a row without writing it: its issue is no longer the agent's."""
        with unavailable_on_connection_loss():
            await self.pool.execute(
                "UPDATE dispatch_outbox SET sent_at = now(), cancelled = true "
                "WHERE assignment_id = $1 AND sent_at IS NULL",
                assignment_id,
            )

    async def entries(self, agent_id: str | None = None) -> list[OutboxEntry]:
        """Every row (of one agent), oldest first: what was dispatched."""
        with unavailable_on_connection_loss():
            rows = await self.pool.fetch(
                "SELECT * FROM dispatch_outbox WHERE $1::text IS NULL OR agent_id = $1 "
                "ORDER BY assignment_id",
                agent_id,
            )
        return [_entry(row) for row in rows]

    async def sent_open(self, stream_ids: Sequence[str]) -> list[OutboxEntry]:
        """The latest sent row of each of these issues (what stuck detection asks Valkey
        about)."""
        with unavailable_on_connection_loss():
            rows = await self.pool.fetch(
                "SELECT DISTINCT ON (stream_id) * FROM dispatch_outbox "
                "WHERE sent_at IS NOT NULL AND NOT cancelled AND stream_id = ANY($1::text[]) "
                "ORDER BY stream_id, assignment_id DESC",
                list(stream_ids),
            )
        return [_entry(row) for row in rows]

    async def stats(self) -> OutboxStats:
        with unavailable_on_connection_loss():
            row = await self.pool.fetchrow(
                "SELECT count(sent_at) FILTER (WHERE NOT cancelled) AS sent, "
                "count(*) - count(sent_at) AS unsent, "
                "min(created_at) FILTER (WHERE sent_at IS NULL) AS oldest "
                "FROM dispatch_outbox"
            )
        assert row is not None
        return OutboxStats(int(row["sent"]), int(row["unsent"]), row["oldest"])
