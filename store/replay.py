"""The projections rebuilt in one pass: the events folded in Python, each table written at once.

`conductor_project(e)`, the plpgsql chain of store/migrations (0001 issues, agents and usage;
0002 usage per issue, execution logs and PR streams; 0003 repo configurations; 0006 holds,
pauses, requeues and the heartbeat check), is the specification. `Replay.apply` mirrors it
event for event: the same branches in the same order, on dicts keyed like each table's
primary key, read as the plpgsql reads the tables - as they stand at the event (the issue
`conductor_issue_of` resolves, the issue state the heartbeat check sees, the agents released
by `current_issue`). A change to `conductor_project` needs the same change here.

Rows come out byte-identical, not merely equal once decoded, because values never leave
PostgreSQL's own text: the events are read with `COPY (SELECT ...) TO STDOUT` and the tables
written with `COPY ... FROM STDIN`, and the fold keeps each field as the text COPY gave it
(`NULL` for SQL NULL, anything else escaped as COPY escapes it, which COPY FROM reads back
unchanged). So:
- the server extracts every field (`->>`, `->`, `lower()`) and makes the casts the plpgsql
  makes on every event of a type (TOKEN_USAGE's numbers, its UTC day, ...);
- a value the plpgsql casts on the way into a column (an issue's number, a run's totals) is
  written as the text it was cast from, and COPY FROM casts it with the same input function;
- jsonb stays its canonical text, and `||` is done on that text (`jsonb_concat`);
- only what the fold must compare is read in Python: `sql_int` (prNumber, linkedFrom) reads
  what int4in/int8in read; usage sums are exact ints and Decimals (NaN and infinities added as
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
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

NULL = "\\N"  # how COPY's text format writes SQL NULL

# --- the events, as the server hands them over -------------------------------------------------
# One line per event: the fields every event may need, then a tail of the fields of one family
# of types (heartbeats, steering, usage, runs, repo configurations), split only by the event
# that reads it. A cast the plpgsql makes on every event of a type is made here under the same
# type, so it cannot fail where the live projection did not.
_ISSUE_STREAM = "stream_id LIKE '%/%#%'"
_RUN = r"type LIKE 'EXECUTION\_LOG\_%'"
_USAGE = "type = 'TOKEN_USAGE'"
_STEERING = "type IN ('ISSUE_HELD', 'ISSUE_UNHELD', 'AGENT_PAUSED', 'AGENT_RESUMED')"
_REPO_CONFIG = "type IN ('REPO_CONFIG_CHANGED', 'REPO_CONFIG_INVALID')"

_FIELDS: tuple[tuple[str, str], ...] = (
    ("position", "position"),
    ("stream_id", "stream_id"),
    ("version", "version"),
    ("type", "type"),
    ("recorded_at", "recorded_at"),
    ("agent", "data->>'agentId'"),
    ("linked_from", "metadata->>'linkedFrom'"),
    ("pr_data", "CASE WHEN stream_id LIKE '%/%!%' THEN data END"),  # not NULL: a PR stream
    # Issue streams (not NULL: one). 0001 and the holds of 0006.
    ("issue_repo_key", f"CASE WHEN {_ISSUE_STREAM} THEN lower(split_part(stream_id, '#', 1)) END"),
    ("title", "data->>'title'"),
    ("url", "data->>'url'"),
    ("labels", "data->'labels'"),
    ("priority", "data->>'priority'"),
    ("pr_number", "data->>'prNumber'"),
)
_TAIL_FIELDS: tuple[tuple[str, str], ...] = (
    # HEARTBEAT (0001, 0002); status is also a run's.
    ("status", f"CASE WHEN type = 'HEARTBEAT' OR {_RUN} THEN data->>'status' END"),
    ("current_repo", "CASE WHEN type = 'HEARTBEAT' THEN data->>'currentRepo' END"),
    ("current_issue", "CASE WHEN type = 'HEARTBEAT' THEN data->>'currentIssue' END"),
    ("details", "CASE WHEN type = 'HEARTBEAT' THEN data - 'type' - 'agentId' END"),
    # Holds and pauses (0006).
    ("actor", f"CASE WHEN {_STEERING} THEN coalesce(metadata->>'actor', data->>'actor') END"),
    ("reason", f"CASE WHEN {_STEERING} THEN data->>'reason' END"),
    # Usage, runs, repo configurations (0002, 0003).
    ("repo", f"CASE WHEN {_USAGE} OR {_RUN} OR {_REPO_CONFIG} THEN data->>'repo' END"),
    ("repo_key", f"CASE WHEN {_USAGE} OR {_RUN} OR {_REPO_CONFIG} THEN lower(data->>'repo') END"),
    ("model", f"CASE WHEN {_USAGE} OR {_RUN} THEN data->>'model' END"),
    # TOKEN_USAGE (conductor_project_usage): the values it inserts.
    ("usage_day", f"CASE WHEN {_USAGE} THEN (recorded_at AT TIME ZONE 'UTC')::date END"),
    ("input_tokens", f"CASE WHEN {_USAGE} THEN coalesce((data->>'inputTokens')::bigint, 0) END"),
    ("output_tokens", f"CASE WHEN {_USAGE} THEN coalesce((data->>'outputTokens')::bigint, 0) END"),
    (
        "cache_read_tokens",
        f"CASE WHEN {_USAGE} THEN coalesce((data->>'cacheReadTokens')::bigint, 0) END",
    ),
    (
        "cache_creation_tokens",
        f"CASE WHEN {_USAGE} THEN coalesce((data->>'cacheCreationTokens')::bigint, 0) END",
    ),
    (
        "cache_creation_1h_tokens",
        f"CASE WHEN {_USAGE} THEN CASE WHEN jsonb_typeof(data->'cacheCreation1hTokens') = 'number'"
        " THEN least(greatest((data->>'cacheCreation1hTokens')::numeric, 0),"
        " coalesce((data->>'cacheCreationTokens')::numeric, 0))::bigint ELSE 0 END END",
    ),
    ("cost_usd", f"CASE WHEN {_USAGE} THEN coalesce((data->>'costUsd')::numeric, 0) END"),
    (
        "reported",
        f"CASE WHEN {_USAGE} THEN CASE WHEN jsonb_typeof(data->'costUsd') = 'number'"
        " THEN 1 ELSE 0 END END",
    ),
    (
        "usage_issue",  # the issue number it is attributed by; NULL: unattributed
        f"CASE WHEN {_USAGE} THEN CASE WHEN coalesce(data->>'repo', '') <> ''"
        " AND jsonb_typeof(data->'issueNumber') = 'number'"
        " AND (data->>'issueNumber')::numeric >= 1"
        " THEN (data->>'issueNumber')::integer END END",
    ),
    # Execution logs (conductor_project_execution_log). Its totals are cast on the way in.
    ("run_id", f"CASE WHEN {_RUN} THEN data->>'executionLogId' END"),
    ("run_issue", f"CASE WHEN {_RUN} THEN nullif((data->>'issueNumber')::integer, 0) END"),
    ("steps", "CASE WHEN type = 'EXECUTION_LOG_STARTED' THEN data->'steps' END"),
    ("step", "CASE WHEN type = 'EXECUTION_LOG_STEP' THEN data->'step' END"),
    ("entries", "CASE WHEN type = 'EXECUTION_LOG_LINES' THEN data->'entries' END"),
    *(
        (name, f"CASE WHEN type = 'EXECUTION_LOG_COMPLETED' THEN data->>'{key}' END")
        for name, key in (
            ("total_cost_usd", "totalCostUsd"),
            ("total_turns", "totalTurns"),
            ("total_input_tokens", "totalInputTokens"),
            ("total_output_tokens", "totalOutputTokens"),
            ("total_cache_read_tokens", "cacheReadTokens"),
            ("total_cache_creation_tokens", "cacheCreationTokens"),
            ("duration_api_ms", "durationApiMs"),
            ("run_pr_number", "prNumber"),
        )
    ),
    # REPO_CONFIG_CHANGED / _INVALID (0003).
    (
        "present",
        "CASE WHEN type = 'REPO_CONFIG_CHANGED'"
        " THEN coalesce((data->>'present')::boolean, false) END",
    ),
    ("config", "CASE WHEN type = 'REPO_CONFIG_CHANGED' THEN data->'config' END"),
    ("sha", f"CASE WHEN {_REPO_CONFIG} THEN data->>'sha' END"),
    ("route_key", f"CASE WHEN {_REPO_CONFIG} THEN data->>'routeKey' END"),
    ("error", f"CASE WHEN {_REPO_CONFIG} THEN data->>'error' END"),
)


def events_query(head: int) -> str:
    """Every event up to `head`, in position order, as the fold reads them (through COPY)."""
    fields = ", ".join(f"{sql} AS {name}" for name, sql in (*_FIELDS, *_TAIL_FIELDS))
    return f"SELECT {fields} FROM events WHERE position <= {int(head)} ORDER BY position"


_NAMES = [name for name, _ in _FIELDS]
_TAIL_NAMES = [name for name, _ in _TAIL_FIELDS]
TAIL = len(_FIELDS)  # the index of the unsplit tail in an event


def _at(name: str) -> int:
    return _NAMES.index(name)


def _in_tail(name: str) -> int:
    return _TAIL_NAMES.index(name)


POSITION, STREAM_ID, VERSION, TYPE, RECORDED_AT, AGENT = (_at(n) for n in _NAMES[:6])
LINKED_FROM = _at("linked_from")
PR_DATA = _at("pr_data")
ISSUE_REPO_KEY = _at("issue_repo_key")
TITLE = _at("title")
URL = _at("url")
LABELS = _at("labels")
PRIORITY = _at("priority")
PR_NUMBER = _at("pr_number")
# In the tail:
STATUS = _in_tail("status")
CURRENT_REPO = _in_tail("current_repo")
CURRENT_ISSUE = _in_tail("current_issue")
DETAILS = _in_tail("details")
ACTOR = _in_tail("actor")
REASON = _in_tail("reason")
REPO = _in_tail("repo")
REPO_KEY = _in_tail("repo_key")
MODEL = _in_tail("model")
USAGE_DAY = _in_tail("usage_day")
INPUT_TOKENS = _in_tail("input_tokens")
OUTPUT_TOKENS = _in_tail("output_tokens")
CACHE_READ_TOKENS = _in_tail("cache_read_tokens")
CACHE_CREATION_TOKENS = _in_tail("cache_creation_tokens")
CACHE_CREATION_1H_TOKENS = _in_tail("cache_creation_1h_tokens")
COST_USD = _in_tail("cost_usd")
REPORTED = _in_tail("reported")
USAGE_ISSUE = _in_tail("usage_issue")
RUN_ID = _in_tail("run_id")
RUN_ISSUE = _in_tail("run_issue")
STEPS = _in_tail("steps")
STEP = _in_tail("step")
ENTRIES = _in_tail("entries")
RUN_TOTALS = slice(_in_tail("total_cost_usd"), _in_tail("duration_api_ms") + 1)
RUN_PR_NUMBER = _in_tail("run_pr_number")
PRESENT = _in_tail("present")
CONFIG = _in_tail("config")
SHA = _in_tail("sha")
ROUTE_KEY = _in_tail("route_key")
ERROR = _in_tail("error")


# --- COPY's text, and the few values the fold reads itself -------------------------------------
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def copy_unescape(field: str) -> str:
    """The value a (non-NULL) COPY text field holds."""
    if "\\" not in field:
        return field
    return _ESCAPED.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), field)


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
    return None if field == NULL else sql_int(copy_unescape(field))


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


# --- the state the projection keeps ------------------------------------------------------------
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
# The events that free the agents whose current issue is their stream.
_RELEASING = frozenset(
    ("ISSUE_UNASSIGNED", "ISSUE_DONE", "ESCALATED", "ISSUE_WITHDRAWN", "ISSUE_REQUEUED")
)
_REVIEWER_CLEARED = frozenset(
    ("REVIEW_DISPUTED", "ISSUE_UNASSIGNED", "ISSUE_REQUEUED", "PR_CREATED")
)
_REQUEUE_FROM_STATES = frozenset(("assigned", "in_progress", "in_review"))
_LOST_STATES = frozenset(("assigned", "in_progress"))
_STEERING_TYPES = frozenset(("ISSUE_HELD", "ISSUE_UNHELD", "AGENT_PAUSED", "AGENT_RESUMED"))


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
        self.title = NULL
        self.url = NULL
        self.labels = "[]"
        self.priority = "normal"
        self.priority_rank = "2"
        self.state = state
        self.assignee = NULL
        self.reviewer = NULL
        self.attempt = 0
        self.pr_number: int | None = None
        self.review_state = NULL
        self.escalated = "f"
        self.human_gate = "f"
        self.approved_at = self.state_since = self.last_activity = e[RECORDED_AT]
        self.last_event_type = e[TYPE]
        self.position = e[POSITION]
        self.held = "f"
        self.held_by = NULL
        self.held_reason = NULL
        self.held_at = NULL
        self.requeued_from = NULL

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
        self.current_issue = NULL
        self.last_heartbeat = NULL
        self.last_event_at = e[RECORDED_AT]
        self.details = "{}"
        self.position = e[POSITION]
        self.paused = "f"
        self.paused_by = NULL
        self.paused_reason = NULL
        self.paused_at = NULL

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

    def __init__(self, e: list[str], tail: list[str], issue_number: str | Tie) -> None:
        self.id = tail[RUN_ID]
        self.stream_id = e[STREAM_ID]
        self.repo = NULL if tail[REPO] == "" else tail[REPO]
        self.issue_number = issue_number
        self.agent_id = e[AGENT]
        self.model = tail[MODEL]
        self.status = "running" if tail[STATUS] == NULL else tail[STATUS]
        self.steps = "[]" if tail[STEPS] == NULL else tail[STEPS]
        self.log_lines = "[]"
        self.totals = [NULL] * 7  # cost, turns, tokens in/out/read/write, API time: cast by COPY
        self.pr_number = NULL
        self.started_at = e[RECORDED_AT]
        self.completed_at = NULL
        self.version = e[VERSION]
        self.position = e[POSITION]

    def row(self) -> list[str]:
        issue_number = self.issue_number
        assert not isinstance(issue_number, Tie), "resolve_ties first"
        return [
            self.id, self.stream_id, self.repo, issue_number, self.agent_id, self.model,
            self.status, self.steps, self.log_lines, *self.totals, self.pr_number,
            self.started_at, self.completed_at, self.version, self.position,
        ]  # fmt: skip


# usage_daily and usage_by_issue: the sums of one key, in this order (the tables' column order).
EVENTS, INPUT, OUTPUT, CACHE_READ, CACHE_CREATION, CACHE_CREATION_1H = range(6)
COST, REPORTED_EVENTS, LAST = 6, 7, 8
_COUNTS = (EVENTS, INPUT, OUTPUT, CACHE_READ, CACHE_CREATION, CACHE_CREATION_1H, REPORTED_EVENTS)
UsageSums = list[Any]
UsageKey = tuple[str, str, str, str]  # usage_daily: day, agent, repo, model
IssueUsageKey = tuple["str | Tie", str, str, str]  # usage_by_issue: stream, day, agent, model


class Replay:
    """The projection tables in memory, and `apply`, which is conductor_project on them.

    An event is its COPY line split at the tail: `event[TAIL]` holds the rest of the line,
    split by the families of types that read it."""

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
            apply(line.split("\t", TAIL))

    # --- conductor_project (0006) -----------------------------------------------------------
    def apply(self, e: list[str]) -> None:
        """conductor_project(e): holds and pauses here, everything else through routing (whose
        lifecycle step also keeps requeued_from); then the heartbeat check."""
        self.events += 1
        event_type = e[TYPE]
        if event_type in _STEERING_TYPES:
            self._steer(e, event_type)
            return
        self._routing(e, event_type)
        if event_type == "HEARTBEAT":
            self._heartbeat_check(e[AGENT])

    def _steer(self, e: list[str], event_type: str) -> None:
        tail = e[TAIL].split("\t", REASON + 1)
        if event_type == "ISSUE_HELD" or event_type == "ISSUE_UNHELD":
            issue = self.issues.get(e[STREAM_ID])
            if issue is None:
                return
            held = event_type == "ISSUE_HELD"
            issue.held = "t" if held else "f"
            issue.held_by = tail[ACTOR] if held else NULL
            issue.held_reason = tail[REASON] if held else NULL
            issue.held_at = e[RECORDED_AT] if held else NULL
            if e[LABELS] != NULL:
                issue.labels = e[LABELS]
            issue.last_activity = e[RECORDED_AT]
            issue.last_event_type = event_type
            issue.position = e[POSITION]
        elif event_type == "AGENT_PAUSED":
            agent = self._agent(e)
            agent.paused = "t"
            agent.paused_by = tail[ACTOR]
            agent.paused_reason = tail[REASON]
            agent.paused_at = e[RECORDED_AT]
        else:  # AGENT_RESUMED: only an agent already known
            found = self.agents.get(e[AGENT])
            if found is not None:
                found.paused = "f"
                found.paused_by = found.paused_reason = found.paused_at = NULL
                found.last_event_at = e[RECORDED_AT]
                found.position = e[POSITION]

    # --- conductor_project_routing (0003) and conductor_project_work (0002) ----------------
    def _routing(self, e: list[str], event_type: str) -> None:
        if event_type == "TOKEN_USAGE":
            self._usage(e)
            return
        if event_type.startswith("EXECUTION_LOG_"):
            self._run(e, event_type)
            return
        self._lifecycle(e, event_type)
        if event_type == "HEARTBEAT":
            tail = e[TAIL].split("\t", CURRENT_ISSUE + 1)
            if tail[CURRENT_REPO] == "" or tail[CURRENT_ISSUE] == "0":
                # Working on nothing it can name: no current issue (not "#0").
                self._set_current(self.agents[e[AGENT]], NULL)
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

    def _repo_config(self, e: list[str], event_type: str) -> None:
        tail = e[TAIL].split("\t")
        key = tail[REPO_KEY]
        if event_type == "REPO_CONFIG_CHANGED":
            self.repo_configs[key] = [
                key, tail[REPO], tail[PRESENT], tail[CONFIG], tail[SHA], tail[ROUTE_KEY], NULL,
                NULL, e[RECORDED_AT], e[POSITION],
            ]  # fmt: skip
            return
        found = self.repo_configs.get(key)
        if found is None:
            self.repo_configs[key] = [
                key, tail[REPO], "f", NULL, NULL, NULL, tail[ERROR], tail[SHA], e[RECORDED_AT],
                e[POSITION],
            ]  # fmt: skip
        else:  # the last good configuration stays
            found[6:] = [tail[ERROR], tail[SHA], e[RECORDED_AT], e[POSITION]]

    # --- conductor_project_lifecycle (0001) ---------------------------------------------------
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
                holder = issue.assignee if issue.state in _REQUEUE_FROM_STATES else NULL
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
        priority = e[PRIORITY]
        if priority != NULL:
            issue.priority = priority
            issue.priority_rank = _PRIORITY_RANK.get(priority, "2")
        if event_type == "ISSUE_ASSIGNED":
            issue.assignee = e[AGENT]
            issue.attempt += 1
            issue.requeued_from = NULL  # 0006
        elif event_type == "ISSUE_UNASSIGNED" or event_type == "ISSUE_REQUEUED":
            issue.assignee = NULL
        if event_type == "REVIEW_ASSIGNED":
            issue.reviewer = e[AGENT]
        elif event_type in _REVIEWER_CLEARED:
            issue.reviewer = NULL
        if e[PR_NUMBER] != NULL:
            self._set_pr(issue, _int_field(e[PR_NUMBER]))
        if event_type == "REVIEW_PASSED":
            issue.review_state = "approved"
        elif event_type == "REVIEW_DISPUTED":
            issue.review_state = "changes_requested"
        elif event_type == "PR_CREATED" or event_type == "ISSUE_REQUEUED":
            issue.review_state = NULL
        if event_type == "ESCALATED":
            issue.escalated = "t"
        elif event_type == "ISSUE_REQUEUED":
            issue.escalated = "f"
        if event_type == "HUMAN_GATE_TRIGGERED":
            issue.human_gate = "t"
        elif event_type == "ISSUE_DONE" or event_type == "ISSUE_REQUEUED":
            issue.human_gate = "f"
        issue.last_activity = e[RECORDED_AT]
        issue.last_event_type = event_type
        issue.position = e[POSITION]

    def _set_pr(self, issue: Issue, pr_number: int | None) -> None:
        if pr_number == issue.pr_number:
            return
        if issue.pr_number is not None:
            self._by_pr[(issue.repo_key, issue.pr_number)].discard(issue.stream_id)
        issue.pr_number = pr_number
        if pr_number is not None:
            self._by_pr.setdefault((issue.repo_key, pr_number), set()).add(issue.stream_id)

    # --- agents -------------------------------------------------------------------------------
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
        tail = e[TAIL].split("\t", DETAILS + 1)
        agent = self._agent(e)
        repo, number = tail[CURRENT_REPO], tail[CURRENT_ISSUE]
        agent.status = "unknown" if tail[STATUS] == NULL else tail[STATUS]
        self._set_current(agent, NULL if repo == NULL or number == NULL else f"{repo}#{number}")
        agent.last_heartbeat = e[RECORDED_AT]
        agent.details = tail[DETAILS]

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

    # --- conductor_issue_of (0002) ------------------------------------------------------------
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
        # recorded_at is ISO text in UTC: its order is the timestamps' order.
        latest = max(self.issues[s].last_activity for s in found)
        tied = frozenset(s for s in found if self.issues[s].last_activity == latest)
        return next(iter(tied)) if len(tied) == 1 else Tie(tied)

    # --- conductor_project_usage (0002) -------------------------------------------------------
    def _usage(self, e: list[str]) -> None:
        tail = e[TAIL].split("\t", USAGE_ISSUE + 1)
        agent_id, day = e[AGENT], tail[USAGE_DAY]
        repo = "" if tail[REPO] == NULL else tail[REPO]
        model = "" if tail[MODEL] == NULL else tail[MODEL]
        number = tail[USAGE_ISSUE]
        stream = "" if number == NULL else self.issue_of(repo, tail[REPO_KEY], number)
        _add_usage(self.usage_daily, (day, agent_id, repo, model), e[POSITION], tail)
        _add_usage(self.usage_by_issue, (stream, day, agent_id, model), e[POSITION], tail)

    # --- conductor_project_execution_log (0002) -----------------------------------------------
    def _run(self, e: list[str], event_type: str) -> None:
        tail = e[TAIL].split("\t")
        if event_type == "EXECUTION_LOG_STARTED":
            repo, number = tail[REPO], tail[RUN_ISSUE]
            issue_number: str | Tie = number
            if repo not in ("", NULL) and number != NULL:
                # A review run names its PR: shown with the PR's issue.
                issue = self.issue_of(repo, tail[REPO_KEY], number)
                issue_number = issue if isinstance(issue, Tie) else split_part(issue, "#", 2)
            self.runs[tail[RUN_ID]] = Run(e, tail, issue_number)
            return
        run = self.runs.get(tail[RUN_ID])
        if run is None:
            return
        if event_type == "EXECUTION_LOG_STEP":
            step = "null" if tail[STEP] == NULL else tail[STEP]
            run.steps = jsonb_concat(run.steps, f"[{step}]")
        elif event_type == "EXECUTION_LOG_LINES":
            entries = "[]" if tail[ENTRIES] == NULL else tail[ENTRIES]
            run.log_lines = jsonb_concat(run.log_lines, entries)
        elif event_type == "EXECUTION_LOG_COMPLETED":
            if tail[STATUS] != NULL:
                run.status = tail[STATUS]
            run.totals = tail[RUN_TOTALS]
            pr_number = _int_field(tail[RUN_PR_NUMBER])
            run.pr_number = NULL if not pr_number else str(pr_number)
            run.completed_at = e[RECORDED_AT]
        else:
            return  # another EXECUTION_LOG_ type: nothing
        run.version = e[VERSION]
        run.position = e[POSITION]


def _add_usage(table: dict[Any, UsageSums], key: Any, position: str, tail: list[str]) -> None:
    sums = table.get(key)
    if sums is None:
        table[key] = [
            1, int(tail[INPUT_TOKENS]), int(tail[OUTPUT_TOKENS]), int(tail[CACHE_READ_TOKENS]),
            int(tail[CACHE_CREATION_TOKENS]), int(tail[CACHE_CREATION_1H_TOKENS]),
            Decimal(tail[COST_USD]), int(tail[REPORTED]), int(position),
        ]  # fmt: skip
        return
    sums[EVENTS] += 1
    sums[INPUT] += int(tail[INPUT_TOKENS])
    sums[OUTPUT] += int(tail[OUTPUT_TOKENS])
    sums[CACHE_READ] += int(tail[CACHE_READ_TOKENS])
    sums[CACHE_CREATION] += int(tail[CACHE_CREATION_TOKENS])
    sums[CACHE_CREATION_1H] += int(tail[CACHE_CREATION_1H_TOKENS])
    sums[COST] = numeric_add(sums[COST], Decimal(tail[COST_USD]))
    sums[REPORTED_EVENTS] += int(tail[REPORTED])
    sums[LAST] = int(position)


def _merge_usage(into: UsageSums, other: UsageSums) -> None:
    for i in _COUNTS:
        into[i] += other[i]
    into[COST] = numeric_add(into[COST], other[COST])
    into[LAST] = max(into[LAST], other[LAST])


# --- reading and writing -----------------------------------------------------------------------
async def read_events(
    conn: asyncpg.Connection, head: int, *, batch_size: int, progress: Callable[[int], None]
) -> Replay:
    """Fold every event up to `head` (in the caller's transaction); `progress(done)` after
    every `batch_size` events and at the end. A cancellation lands between batches."""
    # The fold compares timestamps as text: ISO in UTC orders as the instants do. LOCAL: only
    # for this transaction.
    await conn.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO'")
    fold = Replay()
    rest = b""

    async def fold_chunk(chunk: bytes) -> None:
        nonlocal rest
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        lines = data[:cut].decode().split("\n")
        lines.pop()  # after the last newline
        start = 0
        while start < len(lines):
            take = batch_size - fold.events % batch_size
            fold.apply_lines(lines[start : start + take])
            start += take
            if fold.events % batch_size == 0:
                progress(fold.events)
                await asyncio.sleep(0)

    await conn.copy_from_query(events_query(head), output=fold_chunk)
    assert not rest, "COPY ended inside a line"
    if fold.events % batch_size:
        progress(fold.events)
    return fold


async def resolve_ties(conn: asyncpg.Connection, fold: Replay) -> None:
    """Settle every Tie by PostgreSQL's own order of the stream ids (`ORDER BY stream_id`)."""
    ties = {key[0] for key in fold.usage_by_issue if isinstance(key[0], Tie)}
    ties.update(run.issue_number for run in fold.runs.values() if isinstance(run.issue_number, Tie))
    if not ties:
        return
    names = sorted({name for tie in ties for name in tie.candidates})
    ordered = await conn.fetch(
        "SELECT s FROM unnest($1::text[]) AS s ORDER BY s",
        [copy_unescape(name) for name in names],
    )
    raw_rank = {row[0]: rank for rank, row in enumerate(ordered)}
    rank = {name: raw_rank[copy_unescape(name)] for name in names}
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


def _usage_rows(table: dict[Any, UsageSums]) -> Iterable[Sequence[Any]]:
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


def table_rows(fold: Replay) -> dict[str, Iterable[Sequence[Any]]]:
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
