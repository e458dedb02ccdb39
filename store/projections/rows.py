"""The projection tables' rows as the fold keeps them: each field as COPY's text format has it
(`\\N` for NULL), so the rebuild writes back exactly the text PostgreSQL gave it. A value
conductor_project casts on its way into a column (an issue's number, a run's totals) is kept as
the text it was cast from: COPY FROM casts it with the same input function."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from store.projections.event_lines import (
    AGENT,
    ISSUE_REPO_KEY,
    POSITION,
    RECORDED_AT,
    RUN_ID,
    RUN_MODEL,
    RUN_REPO,
    RUN_STATUS,
    RUN_STEPS,
    RUN_VERSION,
    STREAM_ID,
    TYPE,
    US_CACHE_CREATION,
    US_CACHE_CREATION_1H,
    US_CACHE_READ,
    US_COST,
    US_INPUT,
    US_OUTPUT,
    US_REPORTED,
)
from store.projections.pgtext import NULL, numeric_add, split_part


class Issue:
    """A row of `issues` (COPY text, but for attempt and pr_number), and the lower-cased repo
    its PR is found by."""

    __slots__ = (
        "approved_at",
        "assignee",
        "attempt",
        "escalated",
        "held",
        "held_at",
        "held_by",
        "held_reason",
        "human_gate",
        "labels",
        "last_activity",
        "last_event_type",
        "number",
        "position",
        "pr_number",
        "priority",
        "priority_rank",
        "repo",
        "repo_key",
        "requeued_from",
        "review_state",
        "reviewer",
        "state",
        "state_since",
        "stream_id",
        "title",
        "url",
    )

    def __init__(self, e: list[str], state: str) -> None:
        stream_id = e[STREAM_ID]
        self.stream_id = stream_id
        self.repo = split_part(stream_id, "#", 1)
        self.number = split_part(stream_id, "#", 2)  # cast to integer by COPY
        self.repo_key = e[ISSUE_REPO_KEY]
        self.title = self.url = NULL
        self.labels = "[]"
        self.priority = "normal"
        self.priority_rank = "2"
        self.state = state
        self.assignee = self.reviewer = self.review_state = NULL
        self.attempt = 0
        self.pr_number: int | None = None
        self.escalated = self.human_gate = self.held = "f"
        self.approved_at = self.state_since = self.last_activity = e[RECORDED_AT]
        self.last_event_type = e[TYPE]
        self.position = e[POSITION]
        self.held_by = self.held_reason = self.held_at = self.requeued_from = NULL

    def row(self) -> list[str]:
        return [
            self.stream_id, self.repo, self.number, self.title, self.url, self.labels,
            self.priority, self.priority_rank, self.state, self.assignee, self.reviewer,
            str(self.attempt), NULL if self.pr_number is None else str(self.pr_number),
            self.review_state, self.escalated, self.human_gate, self.approved_at,
            self.state_since, self.last_activity, self.last_event_type, self.position, self.held,
            self.held_by, self.held_reason, self.held_at, self.requeued_from,
        ]  # fmt: skip


class Agent:
    """A row of `agents` (COPY text)."""

    __slots__ = (
        "agent_id",
        "current_issue",
        "details",
        "last_event_at",
        "last_heartbeat",
        "paused",
        "paused_at",
        "paused_by",
        "paused_reason",
        "position",
        "status",
    )

    def __init__(self, agent_id: str, e: list[str]) -> None:
        self.agent_id = agent_id
        self.status = "unknown"
        self.current_issue = self.last_heartbeat = NULL
        self.last_event_at = e[RECORDED_AT]
        self.details = "{}"
        self.position = e[POSITION]
        self.paused = "f"
        self.paused_by = self.paused_reason = self.paused_at = NULL

    def row(self) -> list[str]:
        return [
            self.agent_id, self.status, self.current_issue, self.last_heartbeat,
            self.last_event_at, self.details, self.position, self.paused, self.paused_by,
            self.paused_reason, self.paused_at,
        ]  # fmt: skip


@dataclass(frozen=True)
class Tie:
    """Issues `conductor_issue_of` cannot tell apart by last activity: PostgreSQL's
    `ORDER BY stream_id` (in its collation) picks one, asked once the fold is done."""

    candidates: frozenset[str]


class Run:
    """A row of `execution_logs` (COPY text); its issue number may wait on a Tie."""

    __slots__ = (
        "agent_id",
        "completed_at",
        "id",
        "issue_number",
        "log_lines",
        "model",
        "position",
        "pr_number",
        "repo",
        "started_at",
        "status",
        "steps",
        "stream_id",
        "totals",
        "version",
    )

    def __init__(self, e: list[str], run: list[str], issue_number: str | Tie) -> None:
        self.id = run[RUN_ID]
        self.stream_id = e[STREAM_ID]
        self.repo = NULL if run[RUN_REPO] == "" else run[RUN_REPO]
        self.issue_number = issue_number
        self.agent_id = e[AGENT]
        self.model = run[RUN_MODEL]
        self.status = "running" if run[RUN_STATUS] == NULL else run[RUN_STATUS]
        self.steps = "[]" if run[RUN_STEPS] == NULL else run[RUN_STEPS]
        self.log_lines = "[]"
        self.totals = [NULL] * 7
        self.pr_number = NULL
        self.started_at = e[RECORDED_AT]
        self.completed_at = NULL
        self.version = run[RUN_VERSION]
        self.position = e[POSITION]

    def row(self) -> list[str]:
        issue_number = self.issue_number
        assert not isinstance(issue_number, Tie), "resolve_ties first"
        return [
            self.id, self.stream_id, self.repo, issue_number, self.agent_id, self.model,
            self.status, self.steps, self.log_lines, *self.totals, self.pr_number,
            self.started_at, self.completed_at, self.version, self.position,
        ]  # fmt: skip


# usage_daily and usage_by_issue: the sums of one key, in the tables' column order.
EVENTS, INPUT, OUTPUT, CACHE_READ, CACHE_CREATION, CACHE_CREATION_1H = range(6)
COST, REPORTED_EVENTS, LAST = 6, 7, 8
_COUNTS = (EVENTS, INPUT, OUTPUT, CACHE_READ, CACHE_CREATION, CACHE_CREATION_1H, REPORTED_EVENTS)
UsageSums = list[Any]
UsageKey = tuple[str, str, str, str]  # usage_daily: day, agent, repo, model
IssueUsageKey = tuple["str | Tie", str, str, str]  # usage_by_issue: stream, day, agent, model


def add_usage(table: dict[Any, UsageSums], key: Any, position: str, u: list[str]) -> None:
    sums = table.get(key)
    if sums is None:
        table[key] = [
            1, int(u[US_INPUT]), int(u[US_OUTPUT]), int(u[US_CACHE_READ]),
            int(u[US_CACHE_CREATION]), int(u[US_CACHE_CREATION_1H]), Decimal(u[US_COST]),
            int(u[US_REPORTED]), int(position),
        ]  # fmt: skip
        return
    sums[EVENTS] += 1
    sums[INPUT] += int(u[US_INPUT])
    sums[OUTPUT] += int(u[US_OUTPUT])
    sums[CACHE_READ] += int(u[US_CACHE_READ])
    sums[CACHE_CREATION] += int(u[US_CACHE_CREATION])
    sums[CACHE_CREATION_1H] += int(u[US_CACHE_CREATION_1H])
    sums[COST] = numeric_add(sums[COST], Decimal(u[US_COST]))
    sums[REPORTED_EVENTS] += int(u[US_REPORTED])
    sums[LAST] = int(position)


def merge_usage(into: UsageSums, other: UsageSums) -> None:
    for i in _COUNTS:
        into[i] += other[i]
    into[COST] = numeric_add(into[COST], other[COST])
    into[LAST] = max(into[LAST], other[LAST])
