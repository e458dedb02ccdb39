"""Reading the projection tables (issues, agents, usage, runs, repo configurations)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from store.errors import unavailable_on_connection_loss
from store.events import field_names, from_row

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
    # Held by a person (ISSUE_HELD): never handed out, never merged, whatever its state.
    held: bool = False
    held_by: str | None = None
    held_reason: str | None = None


@dataclass(frozen=True)
class Agent:
    agent_id: str
    status: str
    current_issue: str | None
    last_heartbeat: datetime | None
    last_event_at: datetime
    details: dict[str, Any]
    stale: bool
    # Paused by a person (AGENT_PAUSED): handed nothing new; its current work is untouched.
    paused: bool = False
    paused_by: str | None = None
    paused_reason: str | None = None


@dataclass(frozen=True)
class RepoConfig:
    """A repo's configuration as routing sees it: the last good one, and a newer broken one."""

    repo: str  # lower-cased owner/name
    repo_name: str  # as GitHub spells it
    present: bool  # the last good read found a .rig-agent.yaml
    config: dict[str, Any] | None
    sha: str | None
    route_key: str | None
    error: str | None  # the latest read was broken: why
    error_sha: str | None
    changed_at: datetime
    position: int


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


_ISSUE_COLUMNS = ", ".join(field_names(Issue))
_QUEUE_ORDER = "priority_rank, approved_at, stream_id"


def _issue(row: asyncpg.Record) -> Issue:
    return from_row(Issue, row)


def _usage(row: asyncpg.Record) -> UsageRow:
    return UsageRow(**dict(row.items()))


_USAGE_SUMS = (
    "sum(events)::int AS events, sum(input_tokens)::bigint AS input_tokens, "
    "sum(output_tokens)::bigint AS output_tokens, "
    "sum(cache_read_tokens)::bigint AS cache_read_tokens, "
    "sum(cache_creation_tokens)::bigint AS cache_creation_tokens, "
    "sum(cost_usd) AS cost_usd"
)


@dataclass(frozen=True)
class UsageDay:
    """Usage of one agent and model on one UTC day (all repos)."""

    day: date
    agent_id: str
    model: str
    events: int
    reported_events: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cache_creation_1h_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True)
class IssueUsageDay(UsageDay):
    """Usage on one issue by one agent and model on one UTC day."""

    stream_id: str


@dataclass(frozen=True)
class IssueCostRow:
    """One issue's totals within a window, priced by the rates the caller passed."""

    stream_id: str
    events: int
    reported_events: int
    tokens: int
    cost_usd: Decimal
    computed_usd: Decimal | None
    best_usd: Decimal  # ours where priced, the reported cost where not
    unpriced_events: int


@dataclass(frozen=True)
class PendingPrEvent:
    """A review verdict or merge request waiting on its PR's stream for the PR's issue."""

    position: int
    stream_id: str
    repo: str
    pr_number: int
    type: str
    data: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True)
class ExecutionLog:
    """One run of an agent on an assignment, as its execution-log events left it."""

    id: str
    stream_id: str
    repo: str | None
    issue_number: int | None
    agent_id: str | None
    model: str | None
    status: str
    steps: list[dict[str, Any]]
    log_lines: list[dict[str, Any]]
    total_cost_usd: Decimal | None
    total_turns: int | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_creation_tokens: int | None
    duration_api_ms: int | None
    pr_number: int | None
    started_at: datetime
    completed_at: datetime | None
    version: int  # of its stream: appends expect it, so the bounds hold under concurrency
    position: int


# (model as recorded, first day, first day of the next price, USD per million tokens of:
#  input, output, 5-minute cache writes, 1-hour cache writes, cache reads)
Rate = tuple[str, date, date, Decimal, Decimal, Decimal, Decimal, Decimal]

_SUMS = (
    "sum(events)::int AS events, sum(reported_events)::int AS reported_events, "
    "sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens, "
    "sum(cache_read_tokens)::bigint AS cache_read_tokens, "
    "sum(cache_creation_tokens)::bigint AS cache_creation_tokens, "
    "sum(cache_creation_1h_tokens)::bigint AS cache_creation_1h_tokens, "
    "sum(cost_usd) AS cost_usd"
)

USAGE_BY_DAY = f"""
SELECT day, agent_id, model, {_SUMS}
FROM usage_daily
WHERE day >= $1 AND day <= $2 AND ($3::text IS NULL OR agent_id = $3)
GROUP BY day, agent_id, model
ORDER BY day, agent_id, model
"""

ISSUE_USAGE_BY_DAY = """
SELECT stream_id, day, agent_id, model, events, reported_events, input_tokens, output_tokens,
       cache_read_tokens, cache_creation_tokens, cache_creation_1h_tokens, cost_usd
FROM usage_by_issue WHERE stream_id = $1
ORDER BY day, agent_id, model
"""

# Issues ranked by cost within [since, until]: priced in the query with the caller's rates
# (a row whose model and day match no rate is "unpriced"), each row at our price where it has
# one and at the agents' reported cost where not (the ledger's rule), so an issue whose model is
# unknown still shows up. The ranking runs in float8 over every issue of the window (cheap, and
# small enough to aggregate in memory); only the `limit` issues it picks are then summed
# exactly in numeric. Usage that named no issue is the stream '' (unattributed).
TOP_ISSUES = """
WITH rates AS (
    SELECT * FROM unnest($4::text[], $5::date[], $6::date[], $7::numeric[], $8::numeric[],
                         $9::numeric[], $10::numeric[], $11::numeric[])
        AS r(model, valid_from, valid_to, input, output, write_5m, write_1h, read)
), ranked AS (
    SELECT u.stream_id
    FROM usage_by_issue u
    LEFT JOIN rates r ON r.model = u.model AND u.day >= r.valid_from AND u.day < r.valid_to
    WHERE u.day >= $1 AND u.day <= $2 AND ($3::text IS NULL OR u.agent_id = $3)
    GROUP BY u.stream_id
    ORDER BY sum(CASE WHEN r.model IS NULL THEN u.cost_usd::float8
                      ELSE (u.input_tokens * r.input::float8 + u.output_tokens * r.output::float8
                            + (u.cache_creation_tokens - u.cache_creation_1h_tokens)
                              * r.write_5m::float8
                            + u.cache_creation_1h_tokens * r.write_1h::float8
                            + u.cache_read_tokens * r.read::float8) / 1000000 END) DESC,
             u.stream_id
    LIMIT $12
), priced AS (
    SELECT u.stream_id, u.events, u.reported_events, u.cost_usd,
           u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_creation_tokens
               AS tokens,
           (u.input_tokens * r.input + u.output_tokens * r.output
            + (u.cache_creation_tokens - u.cache_creation_1h_tokens) * r.write_5m
            + u.cache_creation_1h_tokens * r.write_1h
            + u.cache_read_tokens * r.read) / 1000000 AS computed,
           r.model IS NULL AS unpriced
    FROM usage_by_issue u
    JOIN ranked USING (stream_id)
    LEFT JOIN rates r ON r.model = u.model AND u.day >= r.valid_from AND u.day < r.valid_to
    WHERE u.day >= $1 AND u.day <= $2 AND ($3::text IS NULL OR u.agent_id = $3)
)
SELECT stream_id, sum(events)::int AS events, sum(reported_events)::int AS reported_events,
       sum(tokens)::bigint AS tokens, sum(cost_usd) AS cost_usd,
       CASE WHEN bool_or(unpriced) THEN NULL ELSE sum(computed) END AS computed_usd,
       sum(CASE WHEN unpriced THEN cost_usd ELSE computed END) AS best_usd,
       coalesce(sum(events) FILTER (WHERE unpriced), 0)::int AS unpriced_events
FROM priced
GROUP BY stream_id
ORDER BY best_usd DESC, stream_id
"""


class Projections:
    """Queries over the projection tables; every function returns dataclasses."""

    def __init__(self, pool: asyncpg.Pool | asyncpg.Connection) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Projections]:
        """These queries inside one read-only REPEATABLE READ transaction: every answer is of the
        same moment (a board whose columns and counts agree while events land)."""
        assert isinstance(self.pool, asyncpg.Pool), "a snapshot is taken from the pool"
        with unavailable_on_connection_loss():
            async with (
                self.pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                yield Projections(conn)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        with unavailable_on_connection_loss():
            return list(await self.pool.fetch(sql, *args))

    # --- issues -----------------------------------------------------------------------------
    async def queue(self, limit: int = 25, offset: int = 0, repo: str | None = None) -> list[Issue]:
        """Queued issues in priority order (critical > high > normal, then oldest).

        The repo filter is a clause added when a repo is given, not `$3 IS NULL OR repo = $3`:
        a prepared statement's generic plan cannot tell which applies, and reads the queue in
        neither index's order."""
        of_repo, args = (
            ("", ()) if repo is None else ("AND lower(repo) = lower($3) AND repo = $3 ", (repo,))
        )
        rows = await self._fetch(
            f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE state = 'queued' {of_repo}"
            f"ORDER BY {_QUEUE_ORDER} LIMIT $1 OFFSET $2",
            limit,
            offset,
            *args,
        )
        return [_issue(row) for row in rows]

    async def queue_depth(self) -> dict[str, int]:
        """Queued issues per priority."""
        rows = await self._fetch(
            "SELECT priority, count(*)::int AS n FROM issues WHERE state = 'queued' "
            "GROUP BY priority"
        )
        return {row["priority"]: row["n"] for row in rows}

    async def state_counts(self) -> dict[str, int]:
        """Issues per state."""
        rows = await self._fetch("SELECT state, count(*)::int AS n FROM issues GROUP BY state")
        return {row["state"]: row["n"] for row in rows}

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

    async def issue_for_pr(self, repo: str, pr_number: int) -> Issue | None:
        """The issue whose current PR is `repo`'s PR `pr_number` (the latest active one)."""
        rows = await self._fetch(
            f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE lower(repo) = lower($1) "
            "AND pr_number = $2 ORDER BY last_activity DESC, stream_id LIMIT 1",
            repo,
            pr_number,
        )
        return _issue(rows[0]) if rows else None

    async def issues_for_prs(self, repo: str, pr_numbers: Sequence[int]) -> list[Issue]:
        """Every issue whose current PR is one of `repo`'s PRs `pr_numbers`."""
        rows = await self._fetch(
            f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE lower(repo) = lower($1) "
            "AND pr_number = any($2::integer[]) ORDER BY stream_id",
            repo,
            list(pr_numbers),
        )
        return [_issue(row) for row in rows]

    async def pending_pr_events(self, repo: str, pr_number: int) -> list[PendingPrEvent]:
        """Verdicts and merge requests about a PR that wait for its issue, oldest first."""
        rows = await self._fetch(
            "SELECT position, stream_id, repo, pr_number, type, data, recorded_at "
            "FROM pending_pr_events WHERE lower(repo) = lower($1) AND pr_number = $2 "
            "ORDER BY position",
            repo,
            pr_number,
        )
        return [PendingPrEvent(**dict(row.items())) for row in rows]

    # --- execution logs ---------------------------------------------------------------------
    async def execution_log(self, log_id: str) -> ExecutionLog | None:
        rows = await self._fetch("SELECT * FROM execution_logs WHERE id = $1", log_id)
        return ExecutionLog(**dict(rows[0].items())) if rows else None

    async def execution_logs(
        self, repo: str | None, issue_number: int | None, limit: int = 50
    ) -> list[ExecutionLog]:
        """Runs, newest first, optionally of one repo and one issue."""
        rows = await self._fetch(
            "SELECT * FROM execution_logs WHERE ($1::text IS NULL OR lower(repo) = lower($1)) "
            "AND ($2::integer IS NULL OR issue_number = $2) "
            "ORDER BY started_at DESC, position DESC LIMIT $3",
            repo,
            issue_number,
            limit,
        )
        return [ExecutionLog(**dict(row.items())) for row in rows]

    async def last_runs(self, issues: Sequence[tuple[str, int]]) -> list[ExecutionLog]:
        """The newest run of each of these (repo, number) issues that has one."""
        rows = await self._fetch(
            "SELECT l.* FROM unnest($1::text[], $2::integer[]) AS i(repo, number) "
            "CROSS JOIN LATERAL (SELECT * FROM execution_logs l "
            "WHERE lower(l.repo) = lower(i.repo) AND l.issue_number = i.number "
            "ORDER BY l.started_at DESC, l.position DESC LIMIT 1) l",
            [repo for repo, _ in issues],
            [number for _, number in issues],
        )
        return [ExecutionLog(**dict(row.items())) for row in rows]

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
            paused=row["paused"],
            paused_by=row["paused_by"],
            paused_reason=row["paused_reason"],
        )

    # --- repo configuration -----------------------------------------------------------------
    async def repo_configs(self, repos: Sequence[str] | None = None) -> list[RepoConfig]:
        """Every repo configuration read so far (or those of `repos`), by repo."""
        rows = await self._fetch(
            "SELECT repo, repo_name, present, config, sha, route_key, error, error_sha, "
            "changed_at, position FROM repo_configs "
            "WHERE $1::text[] IS NULL OR repo = ANY($1::text[]) ORDER BY repo",
            None if repos is None else [repo.lower() for repo in repos],
        )
        return [RepoConfig(**dict(row.items())) for row in rows]

    async def repo_config(self, repo: str) -> RepoConfig | None:
        """One repo's configuration, or None when it was never read."""
        found = await self.repo_configs([repo])
        return found[0] if found else None

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

    async def issue_usage(self, stream_id: str) -> list[UsageRow]:
        """What one issue cost, per agent and model."""
        rows = await self._fetch(
            f"SELECT agent_id, '' AS repo, model, {_USAGE_SUMS} FROM usage_by_issue "
            "WHERE stream_id = $1 GROUP BY agent_id, model ORDER BY sum(cost_usd) DESC, agent_id",
            stream_id,
        )
        return [_usage(row) for row in rows]

    async def usage_by_day(
        self, since: date, until: date, agent_id: str | None = None
    ) -> list[UsageDay]:
        """Usage per UTC day, agent and model in [since, until], optionally of one agent."""
        rows = await self._fetch(USAGE_BY_DAY, since, until, agent_id)
        return [UsageDay(**dict(row.items())) for row in rows]

    async def issue_usage_by_day(self, stream_id: str) -> list[IssueUsageDay]:
        """One issue's usage per day, agent and model, oldest first."""
        rows = await self._fetch(ISSUE_USAGE_BY_DAY, stream_id)
        return [IssueUsageDay(**dict(row.items())) for row in rows]

    async def top_issues(
        self,
        since: date,
        until: date,
        rates: Sequence[Rate],
        *,
        limit: int = 10,
        agent_id: str | None = None,
    ) -> list[IssueCostRow]:
        """The issues that cost most in [since, until], priced with `rates`."""
        # One array per rate field (model, valid_from, ..., read), as unnest() wants them.
        columns: list[list[Any]] = [[rate[i] for rate in rates] for i in range(8)]
        rows = await self._fetch(TOP_ISSUES, since, until, agent_id, *columns, limit)
        return [IssueCostRow(**dict(row.items())) for row in rows]
