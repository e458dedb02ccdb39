"""Reading the projections (issues, agents, usage) and rebuilding them from the events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from store.events import _unavailable_on_connection_loss

ISSUE_STATES = (
    "queued",
    "assigned",
    "in_progress",
    "in_review",
    "deploying",
    "done",
    "failed",
    "withdrawn",
)


@dataclass(frozen=True)
class Issue:
    stream_id: str
    repo: str
    number: int
    title: str | None
    url: str | None
    labels: list[str]
    priority: str
    state: str
    assignee: str | None
    reviewer: str | None
    attempt: int
    pr_number: int | None
    review_state: str | None
    escalated: bool
    human_gate: bool
    approved_at: datetime | None
    state_since: datetime
    last_activity: datetime
    last_event_type: str
    position: int


@dataclass(frozen=True)
class Agent:
    agent_id: str
    status: str
    current_issue: str | None
    last_heartbeat: datetime | None
    last_event_at: datetime
    details: dict[str, Any]
    stale: bool


@dataclass(frozen=True)
class UsageRow:
    agent_id: str
    repo: str
    model: str
    events: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True)
class DailyCost:
    day: date
    agent_id: str
    cost_usd: Decimal
    input_tokens: int
    output_tokens: int


_ISSUE_COLUMNS = (
    "stream_id, repo, number, title, url, labels, priority, state, assignee, reviewer, attempt, "
    "pr_number, review_state, escalated, human_gate, approved_at, state_since, last_activity, "
    "last_event_type, position"
)
_QUEUE_ORDER = "priority_rank, approved_at, stream_id"


def _issue(row: asyncpg.Record) -> Issue:
    return Issue(**dict(row.items()))


def _usage(row: asyncpg.Record) -> UsageRow:
    return UsageRow(**dict(row.items()))


_USAGE_SUMS = (
    "sum(events)::int AS events, sum(input_tokens)::bigint AS input_tokens, "
    "sum(output_tokens)::bigint AS output_tokens, "
    "sum(cache_read_tokens)::bigint AS cache_read_tokens, "
    "sum(cache_creation_tokens)::bigint AS cache_creation_tokens, "
    "sum(cost_usd) AS cost_usd"
)


class Projections:
    """Queries over the projection tables; every function returns dataclasses."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        with _unavailable_on_connection_loss():
            return list(await self.pool.fetch(sql, *args))

    # --- issues -----------------------------------------------------------------------------
    async def queue(self, limit: int = 25, offset: int = 0, repo: str | None = None) -> list[Issue]:
        """Queued issues in priority order (critical > high > normal, then oldest)."""
        rows = await self._fetch(
            f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE state = 'queued' "
            f"AND ($3::text IS NULL OR repo = $3) ORDER BY {_QUEUE_ORDER} LIMIT $1 OFFSET $2",
            limit,
            offset,
            repo,
        )
        return [_issue(row) for row in rows]

    async def queue_depth(self) -> dict[str, int]:
        """Queued issues per priority."""
        rows = await self._fetch(
            "SELECT priority, count(*)::int AS n FROM issues WHERE state = 'queued' "
            "GROUP BY priority"
        )
        return {row["priority"]: row["n"] for row in rows}

    async def issues(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Issue]:
        """Issues, most recently active first, optionally in one state."""
        rows = await self._fetch(
            f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE ($1::text IS NULL OR state = $1) "
            "ORDER BY last_activity DESC, stream_id LIMIT $2 OFFSET $3",
            state,
            limit,
            offset,
        )
        return [_issue(row) for row in rows]

    async def issue(self, stream_id: str) -> Issue | None:
        rows = await self._fetch(
            f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE stream_id = $1", stream_id
        )
        return _issue(rows[0]) if rows else None

    async def queue_rank(self, stream_id: str) -> int | None:
        """1-based place of a queued issue in the queue, or None when it is not queued."""
        rows = await self._fetch(
            "SELECT (SELECT count(*)::int + 1 FROM issues q WHERE q.state = 'queued' "
            "AND (q.priority_rank, q.approved_at, q.stream_id) "
            "< (i.priority_rank, i.approved_at, i.stream_id)) AS rank "
            "FROM issues i WHERE i.stream_id = $1 AND i.state = 'queued'",
            stream_id,
        )
        return rows[0]["rank"] if rows else None

    # --- agents -----------------------------------------------------------------------------
    async def agents(self, now: datetime, stale_after: timedelta) -> list[Agent]:
        """Every agent seen, with `stale` when no heartbeat came within `stale_after`."""
        rows = await self._fetch(
            "SELECT * FROM agents ORDER BY agent_id",
        )
        return [self._agent(row, now, stale_after) for row in rows]

    async def agent(self, agent_id: str, now: datetime, stale_after: timedelta) -> Agent | None:
        rows = await self._fetch("SELECT * FROM agents WHERE agent_id = $1", agent_id)
        return self._agent(rows[0], now, stale_after) if rows else None

    @staticmethod
    def _agent(row: asyncpg.Record, now: datetime, stale_after: timedelta) -> Agent:
        beat = row["last_heartbeat"]
        return Agent(
            agent_id=row["agent_id"],
            status=row["status"],
            current_issue=row["current_issue"],
            last_heartbeat=beat,
            last_event_at=row["last_event_at"],
            details=row["details"],
            stale=beat is None or now - beat > stale_after,
        )

    # --- usage and costs --------------------------------------------------------------------
    async def usage(self, since: date | None = None) -> list[UsageRow]:
        """Tokens and USD per agent, repo and model since a day (inclusive), or all time."""
        rows = await self._fetch(
            f"SELECT agent_id, repo, model, {_USAGE_SUMS} FROM usage_daily "
            "WHERE ($1::date IS NULL OR day >= $1) GROUP BY agent_id, repo, model "
            "ORDER BY sum(cost_usd) DESC, agent_id, repo, model",
            since,
        )
        return [_usage(row) for row in rows]

    async def daily_costs(self, since: date) -> list[DailyCost]:
        """USD and tokens per day and agent since a day (inclusive)."""
        rows = await self._fetch(
            "SELECT day, agent_id, sum(cost_usd) AS cost_usd, "
            "sum(input_tokens)::bigint AS input_tokens, "
            "sum(output_tokens)::bigint AS output_tokens "
            "FROM usage_daily WHERE day >= $1 GROUP BY day, agent_id ORDER BY day, agent_id",
            since,
        )
        return [DailyCost(**dict(row.items())) for row in rows]

    async def issue_usage(self, stream_id: str) -> list[UsageRow]:
        """What one issue cost, per agent and model."""
        rows = await self._fetch(
            f"SELECT agent_id, '' AS repo, model, {_USAGE_SUMS} FROM usage_by_issue "
            "WHERE stream_id = $1 GROUP BY agent_id, model ORDER BY sum(cost_usd) DESC, agent_id",
            stream_id,
        )
        return [_usage(row) for row in rows]


PROJECTION_TABLES = ("issues", "agents", "usage_daily", "usage_by_issue")


async def rebuild_projections(
    conn: asyncpg.Connection,
    *,
    batch_size: int = 20_000,
    progress: Callable[[int, int, float], None] | None = None,
) -> int:
    """Recreate every projection from the events, in one transaction.

    Appends wait while it runs (it holds the append lock), so the rebuilt rows match the events
    exactly. Interrupting it (cancel, Ctrl-C, a crash) rolls back to the projections as they
    were. `progress(done, total, elapsed_seconds)` is called after each batch. Returns the
    number of events replayed.
    """
    started = time.monotonic()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(7166002)")
        head = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
        total = int(await conn.fetchval("SELECT count(*) FROM events"))
        await conn.execute(f"TRUNCATE {', '.join(PROJECTION_TABLES)}")
        done = 0
        after = 0
        while after < head:
            upto = min(after + batch_size, head)
            done += int(await conn.fetchval("SELECT conductor_project_range($1, $2)", after, upto))
            after = upto
            if progress is not None:
                progress(done, total, time.monotonic() - started)
            await asyncio.sleep(0)  # a cancellation lands between batches
    return done


async def projection_snapshot(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection row, ordered; used to compare a rebuild with the live projections."""
    snapshot = {}
    for table in PROJECTION_TABLES:
        rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4")
        snapshot[table] = [tuple(row.values()) for row in rows]
    return snapshot
