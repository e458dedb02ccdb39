"""The projections rebuilt in one pass: the events folded in Python, each table written at once.

`conductor_project(e)` is the specification: one plpgsql function since migration 0007, which
gathered the rules each migration had added (0001 issues, agents and usage; 0002 usage per
issue, execution logs and PR streams; 0003 repo configurations; 0006 holds, pauses, requeues
and the heartbeat check; the comments below name them so). `Replay.apply` mirrors it event
for event: the same branches, on dicts keyed like each table's
primary key, read as the plpgsql reads the tables - as they stand at the event (the issue
`conductor_issue_of` resolves, the issue state the heartbeat check sees, the agents released
by `current_issue`). A change to `conductor_project` needs the same change here.

Rows come out byte-identical, not merely equal once decoded, because values never leave
PostgreSQL's own text: the events are read with `COPY (SELECT ...) TO STDOUT`, the tables are
written with `COPY ... FROM STDIN`, and the fold keeps each field as COPY's text format has it
(`NULL` for SQL NULL, any other value escaped as COPY escapes it, which COPY FROM reads back
as it was). So:
- the server extracts every field (`->>`, `->`, `lower()`) and makes the casts the plpgsql
  makes on every event of a type (TOKEN_USAGE's numbers, its UTC day, ...);
- a value the plpgsql casts on its way into a column (an issue's number, a run's totals) is
  written as the text it was cast from, and COPY FROM casts it with the same input function;
- jsonb stays its canonical text, and `||` is done on that text (`jsonb_concat`);
- only what the fold compares is read in Python: `sql_int` (prNumber, linkedFrom) reads what
  int4in/int8in read; usage sums are exact ints and Decimals (NaN and infinities added as
  numeric adds them);
- a tie PostgreSQL breaks by `ORDER BY stream_id` (its collation) is sent back to it.

tests/store/test_replay.py proves it: random sequences of every event type the projection
treats apart, appended through the real store, then rebuilt and compared with the live
projection table by table as text.
"""

from __future__ import annotations

import asyncio
import decimal
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

NULL = "\\N"  # how COPY's text format writes SQL NULL

# --- the events, as the server hands them over -------------------------------------------------
# One line per event: the fields any event may need, then `detail`, the fields of its family of
# types (heartbeats, holds and pauses, usage, runs, repo configurations) as a JSON array of
# texts, NULL for the others. A cast the plpgsql makes on every event of a type is made here
# under the same type, so it cannot fail where the live projection did not.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("position", "position"),
    ("stream_id", "stream_id"),
    ("type", "type"),
    ("recorded_at", "recorded_at"),
    ("agent", "data->>'agentId'"),
    ("linked_from", "metadata->>'linkedFrom'"),
    ("pr_data", "CASE WHEN stream_id LIKE '%/%!%' THEN data END"),  # not NULL: a PR stream
    # Issue streams (`issue_repo_key` not NULL: one): 0001, and the holds of 0006.
    (
        "issue_repo_key",
        "CASE WHEN stream_id LIKE '%/%#%' THEN lower(split_part(stream_id, '#', 1)) END",
    ),
    ("title", "data->>'title'"),
    ("url", "data->>'url'"),
    ("labels", "data->'labels'"),
    ("priority", "data->>'priority'"),
    ("pr_number", "data->>'prNumber'"),
)
_FAMILIES: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "heartbeat",  # 0001, 0002
        "type = 'HEARTBEAT'",
        (
            ("status", "data->>'status'"),
            ("current_repo", "data->>'currentRepo'"),
            ("current_issue", "data->>'currentIssue'"),
            ("details", "data - 'type' - 'agentId'"),
        ),
    ),
    (
        "steering",  # 0006
        "type IN ('ISSUE_HELD', 'ISSUE_UNHELD', 'AGENT_PAUSED', 'AGENT_RESUMED')",
        (("actor", "coalesce(metadata->>'actor', data->>'actor')"), ("reason", "data->>'reason'")),
    ),
    (
        "usage",  # conductor_project_usage (0002): the values it inserts
        "type = 'TOKEN_USAGE'",
        (
            ("repo", "data->>'repo'"),
            ("repo_key", "lower(data->>'repo')"),
            ("model", "data->>'model'"),
            ("day", "(recorded_at AT TIME ZONE 'UTC')::date"),
            ("input_tokens", "coalesce((data->>'inputTokens')::bigint, 0)"),
            ("output_tokens", "coalesce((data->>'outputTokens')::bigint, 0)"),
            ("cache_read_tokens", "coalesce((data->>'cacheReadTokens')::bigint, 0)"),
            ("cache_creation_tokens", "coalesce((data->>'cacheCreationTokens')::bigint, 0)"),
            (
                "cache_creation_1h_tokens",
                "CASE WHEN jsonb_typeof(data->'cacheCreation1hTokens') = 'number'"
                " THEN least(greatest((data->>'cacheCreation1hTokens')::numeric, 0),"
                " coalesce((data->>'cacheCreationTokens')::numeric, 0))::bigint ELSE 0 END",
            ),
            ("cost_usd", "coalesce((data->>'costUsd')::numeric, 0)"),
            ("reported", "CASE WHEN jsonb_typeof(data->'costUsd') = 'number' THEN 1 ELSE 0 END"),
            (
                "issue",  # the issue number it is attributed by; NULL: unattributed
                "CASE WHEN coalesce(data->>'repo', '') <> ''"
                " AND jsonb_typeof(data->'issueNumber') = 'number'"
                " AND (data->>'issueNumber')::numeric >= 1"
                " THEN (data->>'issueNumber')::integer END",
            ),
        ),
    ),
    (
        "run",  # conductor_project_execution_log (0002); its totals are cast on the way in
        r"type LIKE 'EXECUTION\_LOG\_%'",
        (
            ("id", "data->>'executionLogId'"),
            ("version", "version"),
            ("repo", "data->>'repo'"),
            ("repo_key", "lower(data->>'repo')"),
            ("issue", "nullif((data->>'issueNumber')::integer, 0)"),
            ("model", "data->>'model'"),
            ("status", "data->>'status'"),
            ("steps", "data->'steps'"),
            ("step", "data->'step'"),
            ("entries", "data->'entries'"),
            ("total_cost_usd", "data->>'totalCostUsd'"),
            ("total_turns", "data->>'totalTurns'"),
            ("input_tokens", "data->>'totalInputTokens'"),
            ("output_tokens", "data->>'totalOutputTokens'"),
            ("cache_read_tokens", "data->>'cacheReadTokens'"),
            ("cache_creation_tokens", "data->>'cacheCreationTokens'"),
            ("duration_api_ms", "data->>'durationApiMs'"),
            ("pr_number", "data->>'prNumber'"),
        ),
    ),
    (
        "repo_config",  # 0003
        "type IN ('REPO_CONFIG_CHANGED', 'REPO_CONFIG_INVALID')",
        (
            ("repo", "data->>'repo'"),
            ("repo_key", "lower(data->>'repo')"),
            (
                "present",
                "CASE WHEN type = 'REPO_CONFIG_CHANGED'"
                " THEN coalesce((data->>'present')::boolean, false) END",
            ),
            ("config", "data->'config'"),
            ("sha", "data->>'sha'"),
            ("route_key", "data->>'routeKey'"),
            ("error", "data->>'error'"),
        ),
    ),
)


def events_query(after: int, upto: int) -> str:
    """The events in (after, upto], in position order, as the fold reads them (through COPY)."""
    detail = " ".join(
        f"WHEN {condition} THEN json_build_array("
        + ", ".join(f"({sql})::text" for _, sql in fields)
        + ")"
        for _, condition, fields in _FAMILIES
    )
    fields = ", ".join(f"{sql} AS {name}" for name, sql in _FIELDS)
    return (
        f"SELECT {fields}, CASE {detail} END AS detail FROM events "
        f"WHERE position > {int(after)} AND position <= {int(upto)} ORDER BY position"
    )


_NAMES = [name for name, _ in _FIELDS]
POSITION, STREAM_ID, TYPE, RECORDED_AT, AGENT, LINKED_FROM, PR_DATA, ISSUE_REPO_KEY = range(8)
TITLE, URL, LABELS, PRIORITY, PR_NUMBER, DETAIL = range(8, 14)
assert _NAMES == [
    "position", "stream_id", "type", "recorded_at", "agent", "linked_from", "pr_data",
    "issue_repo_key", "title", "url", "labels", "priority", "pr_number",
]  # fmt: skip


def _family(name: str) -> tuple[str, ...]:
    return next(tuple(f for f, _ in fields) for family, _, fields in _FAMILIES if family == name)


# The places in each family's detail.
HB_STATUS, HB_CURRENT_REPO, HB_CURRENT_ISSUE, HB_DETAILS = range(4)
ST_ACTOR, ST_REASON = range(2)
(US_REPO, US_REPO_KEY, US_MODEL, US_DAY, US_INPUT, US_OUTPUT, US_CACHE_READ, US_CACHE_CREATION,
 US_CACHE_CREATION_1H, US_COST, US_REPORTED, US_ISSUE) = range(12)  # fmt: skip
(RUN_ID, RUN_VERSION, RUN_REPO, RUN_REPO_KEY, RUN_ISSUE, RUN_MODEL, RUN_STATUS, RUN_STEPS,
 RUN_STEP, RUN_ENTRIES) = range(10)  # fmt: skip
RUN_TOTALS = slice(10, 17)  # total_cost_usd .. duration_api_ms: cast by COPY on the way in
RUN_PR_NUMBER = 17
RC_REPO, RC_REPO_KEY, RC_PRESENT, RC_CONFIG, RC_SHA, RC_ROUTE_KEY, RC_ERROR = range(7)
assert _family("heartbeat")[HB_DETAILS] == "details"
assert _family("steering")[ST_REASON] == "reason"
assert _family("usage")[US_ISSUE] == "issue" and _family("usage")[US_COST] == "cost_usd"
assert _family("run")[RUN_ENTRIES] == "entries" and _family("run")[RUN_PR_NUMBER] == "pr_number"
assert _family("run")[RUN_TOTALS] == (
    "total_cost_usd", "total_turns", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_creation_tokens", "duration_api_ms",
)  # fmt: skip
assert _family("repo_config")[RC_ERROR] == "error"


# --- COPY's text, and the few values the fold reads itself -------------------------------------
_UNESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = str.maketrans(
    {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
)


def copy_unescape(field: str) -> str:
    """The value a (non-NULL) field of COPY's text format holds."""
    if "\\" not in field:
        return field
    return _ESCAPED.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(1)), field)


def copy_escape(value: str) -> str:
    """A value as COPY's text format writes it (the inverse of copy_unescape)."""
    return value.translate(_ESCAPES)


def detail(e: list[str]) -> list[str]:
    """The fields of the event's family (its `detail`), as COPY text like the others."""
    return [NULL if v is None else copy_escape(v) for v in json.loads(copy_unescape(e[DETAIL]))]


_SQL_SPACE = " \t\n\r\v\f"


def sql_int(text: str) -> int:
    """`text::integer` (or `::bigint`) as PostgreSQL reads it: spaces around, a sign, decimal
    digits with `_` between them, or 0x/0o/0b digits. Text PostgreSQL refuses raises ValueError:
    no stored event holds it where the projection casts it."""
    try:
        return int(text)
    except ValueError:
        pass
    trimmed = text.strip(_SQL_SPACE)
    digits = trimmed[1:] if trimmed[:1] in ("-", "+") else trimmed
    if digits[:2].lower() not in ("0x", "0o", "0b"):
        raise ValueError(f"PostgreSQL does not read {text!r} as an integer") from None
    value = int(digits, 0)
    return -value if trimmed.startswith("-") else value


def _int_field(field: str) -> int | None:
    """A COPY field cast to integer by PostgreSQL's rules; NULL stays None."""
    if field == NULL:
        return None
    try:
        return int(field)  # the usual case; an escaped field is never an int to Python
    except ValueError:
        return sql_int(copy_unescape(field))


# numeric + numeric: exact at any size; NaN and ∞ - ∞ give NaN, as in PostgreSQL.
_EXACT = decimal.Context(
    prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[]
)
numeric_add = _EXACT.add


def jsonb_concat(left: str, right: str) -> str:
    """`left || right` on canonical jsonb text, for an array on at least one side: the elements
    of both, a value that is not an array counting as an array of itself."""
    parts = [_elements(left), _elements(right)]
    return "[" + ", ".join(part for part in parts if part) + "]"


def _elements(value: str) -> str:
    return value[1:-1] if value.startswith("[") else value


def split_part(text: str, delimiter: str, field: int) -> str:
    """PostgreSQL's split_part, for field 1 or 2."""
    parts = text.split(delimiter, field)
    return parts[field - 1] if len(parts) >= field else ""


# --- the issue columns each type sets (0001's UPDATE and 0006) ---------------------------------
def issue_state(event_type: str, current: str | None) -> str | None:
    """conductor_issue_state: the state an event moves an issue to; None keeps the state."""
    if event_type == "ISSUE_APPROVED":
        return "queued" if current is None or current == "withdrawn" else None
    return _STATE_AFTER.get(event_type)


_STATE_AFTER = {
    "ISSUE_UNASSIGNED": "queued",
    "ISSUE_REQUEUED": "queued",
    "ISSUE_ASSIGNED": "assigned",
    **dict.fromkeys(
        ("WORK_STARTED", "BRANCH_CREATED", "CI_FAILED", "REVIEW_DISPUTED"), "in_progress"
    ),
    **dict.fromkeys(("PR_CREATED", "REVIEW_ASSIGNED"), "in_review"),
    **dict.fromkeys(
        ("MERGED", "DEPLOYED_STAGING", "SMOKE_PASSED", "DEPLOYED_PRODUCTION", "VERIFIED"),
        "deploying",
    ),
    "E2E_PASSED": "deploying",
    **dict.fromkeys(("SMOKE_FAILED", "E2E_FAILED", "ESCALATED"), "failed"),
    "ISSUE_DONE": "done",
    "ISSUE_WITHDRAWN": "withdrawn",
}
_PRIORITY_RANK = {"critical": "0", "high": "1"}  # conductor_priority_rank: else 2


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


def _assigned(issue: Issue, e: list[str]) -> None:
    issue.assignee = e[AGENT]
    issue.attempt += 1
    issue.requeued_from = NULL  # 0006: the next assignment clears it


def _unassigned(issue: Issue, e: list[str]) -> None:
    issue.assignee = issue.reviewer = NULL


def _requeued(issue: Issue, e: list[str]) -> None:
    issue.assignee = issue.reviewer = issue.review_state = NULL
    issue.escalated = issue.human_gate = "f"


def _review_assigned(issue: Issue, e: list[str]) -> None:
    issue.reviewer = e[AGENT]


def _review_passed(issue: Issue, e: list[str]) -> None:
    issue.review_state = "approved"


def _review_disputed(issue: Issue, e: list[str]) -> None:
    issue.reviewer = NULL
    issue.review_state = "changes_requested"


def _pr_created(issue: Issue, e: list[str]) -> None:
    issue.reviewer = issue.review_state = NULL


def _escalated(issue: Issue, e: list[str]) -> None:
    issue.escalated = "t"


def _human_gate(issue: Issue, e: list[str]) -> None:
    issue.human_gate = "t"


def _done(issue: Issue, e: list[str]) -> None:
    issue.human_gate = "f"


# The CASE columns of 0001's UPDATE (assignee, attempt, reviewer, review_state, escalated,
# human_gate), by the types that set them; every other type leaves them.
_ISSUE_COLUMNS_BY_TYPE: dict[str, Callable[[Issue, list[str]], None]] = {
    "ISSUE_ASSIGNED": _assigned,
    "ISSUE_UNASSIGNED": _unassigned,
    "ISSUE_REQUEUED": _requeued,
    "REVIEW_ASSIGNED": _review_assigned,
    "REVIEW_PASSED": _review_passed,
    "REVIEW_DISPUTED": _review_disputed,
    "PR_CREATED": _pr_created,
    "ESCALATED": _escalated,
    "HUMAN_GATE_TRIGGERED": _human_gate,
    "ISSUE_DONE": _done,
}
# The events that free the agents whose current issue is their stream.
_RELEASING = frozenset(
    ("ISSUE_UNASSIGNED", "ISSUE_DONE", "ESCALATED", "ISSUE_WITHDRAWN", "ISSUE_REQUEUED")
)
_STEERING = frozenset(("ISSUE_HELD", "ISSUE_UNHELD", "AGENT_PAUSED", "AGENT_RESUMED"))
# 0006: the states in which a requeue takes the issue back from its assignee, and those in
# which a heartbeat from another agent does not make the issue its current one.
_REQUEUED_FROM = frozenset(("assigned", "in_progress", "in_review"))
_LOST_STATES = frozenset(("assigned", "in_progress"))


# --- the other rows ----------------------------------------------------------------------------
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


def _add_usage(table: dict[Any, UsageSums], key: Any, position: str, u: list[str]) -> None:
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


def _merge_usage(into: UsageSums, other: UsageSums) -> None:
    for i in _COUNTS:
        into[i] += other[i]
    into[COST] = numeric_add(into[COST], other[COST])
    into[LAST] = max(into[LAST], other[LAST])


# --- the fold ----------------------------------------------------------------------------------
class Replay:
    """The projection tables in memory, and `apply`, which is conductor_project on them.

    An event is its COPY line split into fields (see `events_query`)."""

    def __init__(self) -> None:
        self.issues: dict[str, Issue] = {}
        self.agents: dict[str, Agent] = {}
        self.usage_daily: dict[UsageKey, UsageSums] = {}
        self.usage_by_issue: dict[IssueUsageKey, UsageSums] = {}
        self.runs: dict[str, Run] = {}
        self.pending: dict[str, list[str]] = {}  # by position
        self.repo_configs: dict[str, list[str]] = {}
        # What the plpgsql gets from the tables' indexes: issues by (lower(repo), pr_number),
        # agents by current_issue.
        self._by_pr: dict[tuple[str, int], set[str]] = {}
        self._holding: dict[str, set[str]] = {}
        self.events = 0

    def apply_lines(self, lines: Iterable[str]) -> None:
        apply = self.apply
        for line in lines:
            apply(line.split("\t"))

    def apply(self, e: list[str]) -> None:
        """conductor_project(e): holds and pauses; usage; runs; else the lifecycle (0001),
        PR streams and links, the repo configurations; then the heartbeat check."""
        self.events += 1
        event_type = e[TYPE]
        if event_type in _STEERING:
            self._steer(e, event_type)
            return
        if event_type == "TOKEN_USAGE":
            self._usage(e)
            return
        if event_type.startswith("EXECUTION_LOG_"):
            self._run(e, event_type)
            return
        self._lifecycle(e, event_type)
        if e[PR_DATA] != NULL:
            stream_id = e[STREAM_ID]
            self.pending[e[POSITION]] = [
                e[POSITION], stream_id, split_part(stream_id, "!", 1),
                split_part(stream_id, "!", 2), event_type, e[PR_DATA], e[RECORDED_AT],
            ]  # fmt: skip
        elif e[LINKED_FROM] != NULL:
            self.pending.pop(str(_int_field(e[LINKED_FROM])), None)
        if event_type == "REPO_CONFIG_CHANGED" or event_type == "REPO_CONFIG_INVALID":
            self._repo_config(e, event_type)
        elif event_type == "HEARTBEAT":
            self._heartbeat_check(e[AGENT])

    # --- 0006: holds and pauses ---------------------------------------------------------------
    def _steer(self, e: list[str], event_type: str) -> None:
        steer = detail(e)
        if event_type == "ISSUE_HELD" or event_type == "ISSUE_UNHELD":
            issue = self.issues.get(e[STREAM_ID])
            if issue is None:
                return
            held = event_type == "ISSUE_HELD"
            issue.held = "t" if held else "f"
            issue.held_by = steer[ST_ACTOR] if held else NULL
            issue.held_reason = steer[ST_REASON] if held else NULL
            issue.held_at = e[RECORDED_AT] if held else NULL
            if e[LABELS] != NULL:
                issue.labels = e[LABELS]
            issue.last_activity = e[RECORDED_AT]
            issue.last_event_type = event_type
            issue.position = e[POSITION]
        elif event_type == "AGENT_PAUSED":
            agent = self._agent(e)
            agent.paused = "t"
            agent.paused_by = steer[ST_ACTOR]
            agent.paused_reason = steer[ST_REASON]
            agent.paused_at = e[RECORDED_AT]
        else:  # AGENT_RESUMED: only an agent already known
            found = self.agents.get(e[AGENT])
            if found is not None:
                found.paused = "f"
                found.paused_by = found.paused_reason = found.paused_at = NULL
                found.last_event_at = e[RECORDED_AT]
                found.position = e[POSITION]

    # --- 0003: repo configurations ------------------------------------------------------------
    def _repo_config(self, e: list[str], event_type: str) -> None:
        config = detail(e)
        key = config[RC_REPO_KEY]
        if event_type == "REPO_CONFIG_CHANGED":
            self.repo_configs[key] = [
                key, config[RC_REPO], config[RC_PRESENT], config[RC_CONFIG], config[RC_SHA],
                config[RC_ROUTE_KEY], NULL, NULL, e[RECORDED_AT], e[POSITION],
            ]  # fmt: skip
            return
        found = self.repo_configs.get(key)
        if found is None:
            self.repo_configs[key] = [
                key, config[RC_REPO], "f", NULL, NULL, NULL, config[RC_ERROR], config[RC_SHA],
                e[RECORDED_AT], e[POSITION],
            ]  # fmt: skip
        else:  # the last good configuration stays
            found[6:] = [config[RC_ERROR], config[RC_SHA], e[RECORDED_AT], e[POSITION]]

    # --- 0001: issues and agents --------------------------------------------------------------
    def _lifecycle(self, e: list[str], event_type: str) -> None:
        if e[ISSUE_REPO_KEY] != NULL:
            self._issue(e, event_type)
        agent_id = e[AGENT]
        if event_type == "HEARTBEAT":
            self._heartbeat(e)
        elif agent_id != NULL and (
            event_type == "ISSUE_ASSIGNED" or event_type == "REVIEW_ASSIGNED"
        ):
            agent = self._agent(e)
            agent.status = "assigned"
            self._set_current(agent, e[STREAM_ID])
        elif agent_id != NULL and event_type == "AGENT_STUCK":
            self._agent(e).status = "stuck"
        elif event_type in _RELEASING:
            for held_by in self._holding.pop(e[STREAM_ID], ()):
                agent = self.agents[held_by]
                agent.current_issue = NULL
                agent.status = "idle"
                agent.last_event_at = e[RECORDED_AT]
                agent.position = e[POSITION]

    def _issue(self, e: list[str], event_type: str) -> None:
        stream_id = e[STREAM_ID]
        issue = self.issues.get(stream_id)
        if issue is None:
            state = issue_state(event_type, None)
            # An event that implies no state (CI_PASSED, a reminder) creates no issue row.
            if state is None:
                return
            issue = self.issues[stream_id] = Issue(e, state)
        else:
            if event_type == "ISSUE_REQUEUED":
                # 0006: the agent it is taken back from, read before the update.
                holder = issue.assignee if issue.state in _REQUEUED_FROM else NULL
                issue.requeued_from = NULL if holder == NULL else split_part(holder, "/", 1)
            state = issue_state(event_type, issue.state)
            if state is not None and state != issue.state:
                issue.state = state
                issue.state_since = e[RECORDED_AT]
        if e[TITLE] != NULL:
            issue.title = e[TITLE]
        if e[URL] != NULL:
            issue.url = e[URL]
        if e[LABELS] != NULL:
            issue.labels = e[LABELS]
        if e[PRIORITY] != NULL:
            issue.priority = e[PRIORITY]
            issue.priority_rank = _PRIORITY_RANK.get(e[PRIORITY], "2")
        if e[PR_NUMBER] != NULL:
            pr_number = _int_field(e[PR_NUMBER])
            if pr_number != issue.pr_number:
                self._set_pr(issue, pr_number)
        by_type = _ISSUE_COLUMNS_BY_TYPE.get(event_type)
        if by_type is not None:
            by_type(issue, e)
        issue.last_activity = e[RECORDED_AT]
        issue.last_event_type = event_type
        issue.position = e[POSITION]

    def _set_pr(self, issue: Issue, pr_number: int | None) -> None:
        if issue.pr_number is not None:
            self._by_pr[(issue.repo_key, issue.pr_number)].discard(issue.stream_id)
        issue.pr_number = pr_number
        if pr_number is not None:
            self._by_pr.setdefault((issue.repo_key, pr_number), set()).add(issue.stream_id)

    def _agent(self, e: list[str]) -> Agent:
        """The agent `e` names, created if new; last seen at `e` either way."""
        agent_id = e[AGENT]
        agent = self.agents.get(agent_id)
        if agent is None:
            agent = self.agents[agent_id] = Agent(agent_id, e)
        else:
            agent.last_event_at = e[RECORDED_AT]
            agent.position = e[POSITION]
        return agent

    def _set_current(self, agent: Agent, stream_id: str) -> None:
        previous = agent.current_issue
        if previous == stream_id:
            return
        if previous != NULL:
            self._holding[previous].discard(agent.agent_id)
        agent.current_issue = stream_id
        if stream_id != NULL:
            self._holding.setdefault(stream_id, set()).add(agent.agent_id)

    def _heartbeat(self, e: list[str]) -> None:
        beat = detail(e)
        agent = self._agent(e)
        repo, number = beat[HB_CURRENT_REPO], beat[HB_CURRENT_ISSUE]
        agent.status = "unknown" if beat[HB_STATUS] == NULL else beat[HB_STATUS]
        agent.last_heartbeat = e[RECORDED_AT]
        agent.details = beat[HB_DETAILS]
        if repo == "" or number == "0":
            # 0002: working on nothing it can name: no current issue (not "#0").
            self._set_current(agent, NULL)
        else:
            self._set_current(agent, NULL if NULL in (repo, number) else f"{repo}#{number}")

    def _heartbeat_check(self, agent_id: str) -> None:
        """0006: a heartbeat naming an issue that is no longer the agent's (requeued, or given
        to another agent) does not make it its current issue again."""
        agent = self.agents[agent_id]
        issue = self.issues.get(agent.current_issue)
        if issue is None:
            return
        if issue.state == "queued" or (
            issue.state in _LOST_STATES
            and split_part("" if issue.assignee == NULL else issue.assignee, "/", 1)
            != split_part(agent_id, "/", 1)
        ):
            self._set_current(agent, NULL)

    # --- 0002: conductor_issue_of, usage, runs -----------------------------------------------
    def issue_of(self, repo: str, repo_key: str, number: str) -> str | Tie:
        """The issue `repo#number` names: that issue when known; else the issue whose PR it is
        (the most recently active); else `repo#number` as given."""
        named = f"{repo}#{number}"
        if named in self.issues:
            return named
        found = self._by_pr.get((repo_key, int(number)))
        if not found:
            return named
        if len(found) == 1:
            return next(iter(found))
        # recorded_at is ISO text in UTC (see read_events): it orders as the instants do.
        latest = max(self.issues[s].last_activity for s in found)
        tied = frozenset(s for s in found if self.issues[s].last_activity == latest)
        return next(iter(tied)) if len(tied) == 1 else Tie(tied)

    def _usage(self, e: list[str]) -> None:
        usage = detail(e)
        agent_id, day = e[AGENT], usage[US_DAY]
        repo = "" if usage[US_REPO] == NULL else usage[US_REPO]
        model = "" if usage[US_MODEL] == NULL else usage[US_MODEL]
        number = usage[US_ISSUE]
        stream = "" if number == NULL else self.issue_of(repo, usage[US_REPO_KEY], number)
        _add_usage(self.usage_daily, (day, agent_id, repo, model), e[POSITION], usage)
        _add_usage(self.usage_by_issue, (stream, day, agent_id, model), e[POSITION], usage)

    def _run(self, e: list[str], event_type: str) -> None:
        run = detail(e)
        if event_type == "EXECUTION_LOG_STARTED":
            repo, number = run[RUN_REPO], run[RUN_ISSUE]
            issue_number: str | Tie = number
            if repo not in ("", NULL) and number != NULL:
                # A review run names its PR: shown with the PR's issue.
                issue = self.issue_of(repo, run[RUN_REPO_KEY], number)
                issue_number = issue if isinstance(issue, Tie) else split_part(issue, "#", 2)
            self.runs[run[RUN_ID]] = Run(e, run, issue_number)
            return
        found = self.runs.get(run[RUN_ID])
        if found is None:
            return
        if event_type == "EXECUTION_LOG_STEP":
            step = "null" if run[RUN_STEP] == NULL else run[RUN_STEP]
            found.steps = jsonb_concat(found.steps, f"[{step}]")
        elif event_type == "EXECUTION_LOG_LINES":
            entries = "[]" if run[RUN_ENTRIES] == NULL else run[RUN_ENTRIES]
            found.log_lines = jsonb_concat(found.log_lines, entries)
        elif event_type == "EXECUTION_LOG_COMPLETED":
            if run[RUN_STATUS] != NULL:
                found.status = run[RUN_STATUS]
            found.totals = run[RUN_TOTALS]
            pr_number = _int_field(run[RUN_PR_NUMBER])
            found.pr_number = NULL if not pr_number else str(pr_number)
            found.completed_at = e[RECORDED_AT]
        else:
            return  # another EXECUTION_LOG_ type: nothing
        found.version = run[RUN_VERSION]
        found.position = e[POSITION]


# --- reading and writing -----------------------------------------------------------------------
async def read_events(
    conn: asyncpg.Connection, head: int, *, batch_size: int, progress: Callable[[int], None]
) -> Replay:
    """Fold the events up to `head` (in the caller's transaction), one COPY per `batch_size`
    positions; `progress(events so far)` after each. A cancellation lands between them."""
    # The fold compares timestamps as their text: ISO in UTC orders as the instants do. LOCAL:
    # for this transaction only.
    await conn.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO'")
    fold = Replay()
    rest = b""

    async def fold_lines(chunk: bytes) -> None:
        nonlocal rest
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        lines = data[:cut].decode().split("\n")
        lines.pop()  # after the last newline
        fold.apply_lines(lines)

    after = 0
    while after < head:
        upto = min(after + batch_size, head)
        await conn.copy_from_query(events_query(after, upto), output=fold_lines)
        assert not rest, "COPY ended inside a line"
        progress(fold.events)
        await asyncio.sleep(0)
        after = upto
    return fold


async def resolve_ties(conn: asyncpg.Connection, fold: Replay) -> None:
    """Settle every Tie by PostgreSQL's own order of the stream ids (`ORDER BY stream_id`)."""
    ties = {key[0] for key in fold.usage_by_issue if isinstance(key[0], Tie)}
    ties.update(run.issue_number for run in fold.runs.values() if isinstance(run.issue_number, Tie))
    if not ties:
        return
    names = sorted({name for tie in ties for name in tie.candidates})
    ordered = await conn.fetch(
        "SELECT s FROM unnest($1::text[]) AS s ORDER BY s", [copy_unescape(n) for n in names]
    )
    rank = {copy_escape(row[0]): i for i, row in enumerate(ordered)}
    winner = {tie: min(tie.candidates, key=rank.__getitem__) for tie in ties}
    for run in fold.runs.values():
        if isinstance(run.issue_number, Tie):
            run.issue_number = split_part(winner[run.issue_number], "#", 2)
    settled: dict[IssueUsageKey, UsageSums] = {}
    for (stream, day, agent_id, model), sums in fold.usage_by_issue.items():
        key = (winner[stream] if isinstance(stream, Tie) else stream, day, agent_id, model)
        if key in settled:
            _merge_usage(settled[key], sums)
        else:
            settled[key] = sums
    fold.usage_by_issue = settled


def _usage_rows(table: dict[Any, UsageSums]) -> Iterable[Sequence[str]]:
    for key, sums in table.items():
        yield (*key, *map(str, sums))


_COLUMNS = {
    "issues": (
        "stream_id, repo, number, title, url, labels, priority, priority_rank, state, assignee, "
        "reviewer, attempt, pr_number, review_state, escalated, human_gate, approved_at, "
        "state_since, last_activity, last_event_type, position, held, held_by, held_reason, "
        "held_at, requeued_from"
    ),
    "agents": (
        "agent_id, status, current_issue, last_heartbeat, last_event_at, details, position, "
        "paused, paused_by, paused_reason, paused_at"
    ),
    "usage_daily": (
        "day, agent_id, repo, model, events, input_tokens, output_tokens, cache_read_tokens, "
        "cache_creation_tokens, cache_creation_1h_tokens, cost_usd, reported_events, position"
    ),
    "usage_by_issue": (
        "stream_id, day, agent_id, model, events, input_tokens, output_tokens, "
        "cache_read_tokens, cache_creation_tokens, cache_creation_1h_tokens, cost_usd, "
        "reported_events, position"
    ),
    "execution_logs": (
        "id, stream_id, repo, issue_number, agent_id, model, status, steps, log_lines, "
        "total_cost_usd, total_turns, input_tokens, output_tokens, cache_read_tokens, "
        "cache_creation_tokens, duration_api_ms, pr_number, started_at, completed_at, version, "
        "position"
    ),
    "pending_pr_events": "position, stream_id, repo, pr_number, type, data, recorded_at",
    "repo_configs": (
        "repo, repo_name, present, config, sha, route_key, error, error_sha, changed_at, position"
    ),
}


async def check_tables(conn: asyncpg.Connection) -> None:
    """Refuse to rebuild a table with a column the fold does not write: a migration that adds
    one must teach this module what conductor_project puts there (else it would hold its
    default)."""
    rows = await conn.fetch(
        "SELECT attrelid::regclass::text AS table_name, attname FROM pg_attribute "
        "WHERE attrelid = ANY($1::regclass[]) AND attnum > 0 AND NOT attisdropped",
        list(_COLUMNS),
    )
    unknown = sorted(
        f"{row['table_name']}.{row['attname']}"
        for row in rows
        if row["attname"] not in _COLUMNS[row["table_name"]].split(", ")
    )
    if unknown:
        raise RuntimeError(
            f"store/replay.py does not know the column(s) {', '.join(unknown)}: teach it what "
            "conductor_project writes there before rebuilding"
        )


def table_rows(fold: Replay) -> dict[str, Iterable[Sequence[str]]]:
    """Every projection table's rows, as COPY text fields in `_COLUMNS` order."""
    return {
        "issues": (issue.row() for issue in fold.issues.values()),
        "agents": (agent.row() for agent in fold.agents.values()),
        "usage_daily": _usage_rows(fold.usage_daily),
        "usage_by_issue": _usage_rows(fold.usage_by_issue),
        "execution_logs": (run.row() for run in fold.runs.values()),
        "pending_pr_events": fold.pending.values(),
        "repo_configs": fold.repo_configs.values(),
    }


async def write_projections(conn: asyncpg.Connection, fold: Replay) -> None:
    """Write every table the fold kept, one COPY each (the tables are empty)."""
    await resolve_ties(conn, fold)
    for table, rows in table_rows(fold).items():
        text = "".join("\t".join(row) + "\n" for row in rows)
        if text:
            columns = _COLUMNS[table].split(", ")
            await conn.copy_to_table(table, source=io.BytesIO(text.encode()), columns=columns)
