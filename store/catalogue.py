"""The event catalogue: every event type, its payload schema and the stream it belongs to.

Payload field names are the camelCase ones the agents send today (`repo`, `issueNumber`,
`agentId`, `prNumber`, `inputTokens`, ...). Fields a schema does not name are kept as sent, so
an agent that reports more than we read loses nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from store.errors import EventValidationError
from store.storable import unstorable

Priority = Literal["critical", "high", "normal"]
PRIORITIES: tuple[Priority, ...] = ("critical", "high", "normal")
PRIORITY_RANK: dict[str, int] = {"critical": 0, "high": 1, "normal": 2}

# A name of dots only (".", "..") is no repository: it would be a path step in every link.
_NAME = r"[A-Za-z0-9_.-]{0,99}[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}"
REPO_PATTERN = rf"^{_NAME}/{_NAME}$"
# An agent id, optionally with the instance the runtime appends (`dev-e-node/abc12`).
AGENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}(/[A-Za-z0-9_.:-]{1,64})?$"
_ISSUE_STREAM = re.compile(rf"({_NAME}/{_NAME})#([1-9][0-9]{{0,9}})")

Repo = Annotated[str, Field(pattern=REPO_PATTERN)]
AgentId = Annotated[str, Field(pattern=AGENT_PATTERN)]
Number = Annotated[int, Field(ge=1, le=2_147_483_647)]
Tokens = Annotated[int, Field(ge=0, le=10_000_000_000)]
ShortText = Annotated[str, Field(max_length=1_000)]
LongText = Annotated[str, Field(max_length=8_000)]
# Links are shown on the dashboard and in Discord: http(s) only, never `javascript:`.
Link = Annotated[str, Field(max_length=1_000, pattern=r"^(?:[Hh][Tt][Tt][Pp][Ss]?://\S+)?$")]
Label = Annotated[str, Field(max_length=64)]
Count = Annotated[int, Field(ge=0, le=2_147_483_647)]
Usd = Annotated[float, Field(ge=0, le=1_000_000)]
# What the agent runtime sends when it does not know: repo "" and issueNumber 0. Kept as sent;
# the projections read both as "unknown".
MaybeRepo = Repo | Literal[""] | None
MaybeNumber = Number | Literal[0] | None

# Streams of Conductor-E's own events.
COORDINATION_STREAM = "conductor-e:coordination"
ADMIN_STREAM = "conductor-e:admin"
MERGE_GATE_STREAM = "conductor-e:merge-gate"
SUMMARY_STREAM = "conductor-e:summaries"
# An execution log's events go to `execution-log#<id>` (no agent id or issue holds a '#'
# without an 'owner/' before it).
EXECUTION_LOG_STREAM = "execution-log"
BUDGET_STREAM = "conductor-e:budgets"


class Payload(BaseModel):
    """Base of every payload: strict types, unknown fields kept as sent."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)
    # Where the event goes: "issue" (owner/repo#N), "agent" (the agent id), "repo"
    # (repo:owner/name) or a fixed stream.
    stream: ClassVar[str] = "issue"
    # Whether agents may post it to /api/events, or only Conductor-E records it.
    public: ClassVar[bool] = True


class IssuePayload(Payload):
    repo: Repo
    issueNumber: Number
    agentId: AgentId | None = None


class IssueApproved(IssuePayload):
    title: ShortText | None = None
    url: Link | None = None
    labels: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=100)] = []
    priority: Priority | None = None


class AgentAction(IssuePayload):
    agentId: AgentId


class WorkStarted(AgentAction):
    branch: ShortText | None = None


class BranchCreated(IssuePayload):
    branch: ShortText


class PrEvent(IssuePayload):
    prNumber: Number | None = None
    url: Link | None = None


class PrCreated(PrEvent):
    prNumber: Number


class ReviewAssigned(PrEvent):
    agentId: AgentId


class Reasoned(IssuePayload):
    reason: LongText


class PriorityChanged(IssuePayload):
    priority: Priority
    labels: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=100)] = []
    public: ClassVar[bool] = False


class Withdrawn(Reasoned):
    public: ClassVar[bool] = False


class Requeued(IssuePayload):
    reason: LongText | None = None
    public: ClassVar[bool] = False


class Held(IssuePayload):
    """A person holds an issue (or releases it): `labels` are the issue's labels on GitHub after
    the hold label was added (or removed)."""

    reason: LongText | None = None
    labels: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=100)] = []
    public: ClassVar[bool] = False


class AgentSteered(Payload):
    """A person pauses (or resumes) an agent."""

    stream: ClassVar[str] = "agent"
    public: ClassVar[bool] = False
    agentId: AgentId
    reason: LongText | None = None


class Note(IssuePayload):
    """Lifecycle steps that carry optional detail only."""

    prNumber: Number | None = None
    environment: ShortText | None = None
    details: LongText | None = None


class Heartbeat(Payload):
    stream: ClassVar[str] = "agent"
    agentId: AgentId
    status: Label | None = None
    currentIssue: MaybeNumber = None
    currentRepo: MaybeRepo = None


class AgentStuck(Payload):
    stream: ClassVar[str] = "agent"
    agentId: AgentId
    reason: LongText
    repo: Repo | None = None
    issueNumber: Number | None = None


class TokenUsage(Payload):
    stream: ClassVar[str] = "agent"
    agentId: AgentId
    model: Annotated[str, Field(max_length=100)]  # "" when the runtime does not know it
    inputTokens: Tokens
    outputTokens: Tokens
    cacheReadTokens: Tokens = Field(
        0, validation_alias=AliasChoices("cacheReadTokens", "cacheReadInputTokens")
    )
    cacheCreationTokens: Tokens = Field(
        0, validation_alias=AliasChoices("cacheCreationTokens", "cacheCreationInputTokens")
    )
    # The part of cacheCreationTokens written to the 1-hour cache (priced apart from 5-minute).
    cacheCreation1hTokens: Tokens = 0
    costUsd: Usd | None = None
    repo: MaybeRepo = None
    issueNumber: MaybeNumber = None
    category: Label | None = None  # "work", "idle", "chat" or ""


class MergeRequested(Payload):
    """An agent asks the merge gate to decide on a PR (`POST /api/merge`)."""

    public: ClassVar[bool] = False
    repo: Repo
    prNumber: Number
    agentId: AgentId | None = None


class ExecutionLogRecord(Payload):
    """The events of one execution log, recorded through /api/execution-logs only."""

    stream: ClassVar[str] = EXECUTION_LOG_STREAM
    public: ClassVar[bool] = False
    executionLogId: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class ExecutionStep(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: Label
    status: Label | None = None
    detail: LongText | None = None
    costUsd: Usd | None = None
    turns: Count | None = None


class ExecutionLogStarted(ExecutionLogRecord):
    repo: MaybeRepo = None
    issueNumber: MaybeNumber = None
    agentId: AgentId | None = None
    status: Label = "running"
    model: Annotated[str, Field(max_length=100)] | None = None
    steps: list[ExecutionStep] = []


class ExecutionLogStep(ExecutionLogRecord):
    step: ExecutionStep  # nested: its `type` is the step's, not the event's


class ExecutionLogLine(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    timestamp: Label | None = None
    level: Label | None = None
    message: LongText = ""


class ExecutionLogLines(ExecutionLogRecord):
    entries: list[ExecutionLogLine]


class ExecutionLogCompleted(ExecutionLogRecord):
    status: Label
    totalCostUsd: Usd | None = None
    totalTurns: Count | None = None
    totalInputTokens: Tokens | None = None
    totalOutputTokens: Tokens | None = None
    cacheReadTokens: Tokens | None = None
    cacheCreationTokens: Tokens | None = None
    durationApiMs: Annotated[int, Field(ge=0, le=10**12)] | None = None
    prNumber: MaybeNumber = None


class RepoConfigChanged(Payload):
    """A repo's `.rig-agent.yaml` as read from GitHub: its validated content, or none."""

    stream: ClassVar[str] = "repo"
    public: ClassVar[bool] = False
    repo: Repo
    present: bool
    sha: Annotated[str, Field(max_length=100)] | None = None
    config: dict[str, Any] | None = None
    routeKey: Annotated[str, Field(max_length=100)] | None = None


class RepoConfigInvalid(Payload):
    """A repo's `.rig-agent.yaml` that could not be used; the last good one stays in force."""

    stream: ClassVar[str] = "repo"
    public: ClassVar[bool] = False
    repo: Repo
    sha: Annotated[str, Field(max_length=100)] | None = None
    error: LongText


class MergeBlocked(PrEvent):
    """The merge gate asked GitHub to merge and GitHub refused: why, for which head."""

    public: ClassVar[bool] = False
    prNumber: Number
    headSha: Annotated[str, Field(max_length=100)]
    status: Annotated[int, Field(ge=100, le=599)]
    reason: LongText


class MergeGateSwitch(Payload):
    """`/merge pause|resume [repo]`: the gate stops (or starts again) merging; repo "" is all."""

    stream: ClassVar[str] = MERGE_GATE_STREAM
    public: ClassVar[bool] = False
    repo: Annotated[str, Field(max_length=200)]
    actor: ShortText


class ConductorRecord(Payload):
    """Conductor-E's own records: free-form facts, never posted by agents."""

    public: ClassVar[bool] = False


class CoordinationRecord(ConductorRecord):
    stream: ClassVar[str] = COORDINATION_STREAM


class AdminRecord(ConductorRecord):
    stream: ClassVar[str] = ADMIN_STREAM
    actor: ShortText
    action: ShortText
    target: ShortText | None = None
    result: LongText | None = None


class SummaryRecord(ConductorRecord):
    stream: ClassVar[str] = SUMMARY_STREAM
    text: Annotated[str, Field(max_length=20_000)]


class BudgetRecord(ConductorRecord):
    stream: ClassVar[str] = BUDGET_STREAM
    agentId: AgentId
    threshold: Annotated[int, Field(ge=1, le=1000)]
    day: Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    spent: Annotated[float, Field(ge=0)]
    budget: Annotated[float, Field(gt=0)]


CATALOGUE: dict[str, type[Payload]] = {
    # The issue lifecycle.
    "ISSUE_APPROVED": IssueApproved,
    "ISSUE_ASSIGNED": AgentAction,
    "ISSUE_UNASSIGNED": IssuePayload,
    "WORK_STARTED": WorkStarted,
    "BRANCH_CREATED": BranchCreated,
    "PR_CREATED": PrCreated,
    "CI_PASSED": PrEvent,
    "CI_FAILED": PrEvent,
    "REVIEW_ASSIGNED": ReviewAssigned,
    "REVIEW_PASSED": PrEvent,
    "REVIEW_DISPUTED": PrEvent,
    "MERGED": PrEvent,
    "DEPLOYED_STAGING": Note,
    "SMOKE_PASSED": Note,
    "SMOKE_FAILED": Note,
    "DEPLOYED_PRODUCTION": Note,
    "VERIFIED": Note,
    "E2E_PASSED": Note,
    "E2E_FAILED": Note,
    "ISSUE_DONE": Note,
    "HUMAN_GATE_TRIGGERED": Reasoned,
    "HUMAN_GATE_REMINDER": Note,
    "ESCALATED": Reasoned,
    "MERGE_REQUESTED": MergeRequested,
    "MERGE_BLOCKED": MergeBlocked,
    # The merge gate's switch.
    "MERGE_GATE_PAUSED": MergeGateSwitch,
    "MERGE_GATE_RESUMED": MergeGateSwitch,
    # Conductor-E's own changes to an issue.
    "ISSUE_WITHDRAWN": Withdrawn,
    "ISSUE_REQUEUED": Requeued,
    "PRIORITY_CHANGED": PriorityChanged,
    # People steering the work (issue 17).
    "ISSUE_HELD": Held,
    "ISSUE_UNHELD": Held,
    "AGENT_PAUSED": AgentSteered,
    "AGENT_RESUMED": AgentSteered,
    # Agents.
    "HEARTBEAT": Heartbeat,
    "AGENT_STUCK": AgentStuck,
    "TOKEN_USAGE": TokenUsage,
    "EXECUTION_LOG_STARTED": ExecutionLogStarted,
    "EXECUTION_LOG_STEP": ExecutionLogStep,
    "EXECUTION_LOG_LINES": ExecutionLogLines,
    "EXECUTION_LOG_COMPLETED": ExecutionLogCompleted,
    # Repos' configuration (.rig-agent.yaml), which routing follows.
    "REPO_CONFIG_CHANGED": RepoConfigChanged,
    "REPO_CONFIG_INVALID": RepoConfigInvalid,
    # Conductor-E's own records.
    "COORDINATION_RUN_COMPLETED": CoordinationRecord,
    "COORDINATION_RUN_FAILED": CoordinationRecord,
    "ADMIN_ACTION_REQUESTED": AdminRecord,
    "ADMIN_ACTION_CONFIRMED": AdminRecord,
    "ADMIN_ACTION_DENIED": AdminRecord,
    "ADMIN_ACTION_CANCELLED": AdminRecord,
    "ADMIN_ACTION_COMPLETED": AdminRecord,
    "ADMIN_ACTION_FAILED": AdminRecord,
    "SUMMARY_POSTED": SummaryRecord,
    "BUDGET_THRESHOLD_CROSSED": BudgetRecord,
}

ISSUE_TYPES = frozenset(name for name, model in CATALOGUE.items() if model.stream == "issue")


def priority_from_labels(labels: Iterable[str], mapping: Mapping[str, str]) -> Priority:
    """The highest priority any label maps to through `mapping` (lower-cased keys); else normal."""
    best: Priority = "normal"
    for label in labels:
        mapped = mapping.get(label.lower())
        if mapped in PRIORITY_RANK and PRIORITY_RANK[mapped] < PRIORITY_RANK[best]:
            best = mapped  # type: ignore[assignment]
    return best


def _field_of(error: Mapping[str, Any]) -> str:
    return ".".join(str(part) for part in error.get("loc", ())) or "body"


def validate(event_type: Any, payload: dict[str, Any], *, internal: bool = False) -> dict[str, Any]:
    """Check a payload against its type's schema and return the data to store.

    Raises EventValidationError naming the offending field. `internal` admits the types only
    Conductor-E records. The returned dict holds the fields as sent (aliases normalised, `type`
    dropped since it is the event's own column).
    """
    if not isinstance(event_type, str) or not event_type:
        raise EventValidationError("field 'type' is required and must be a string", "type")
    model = CATALOGUE.get(event_type)
    if model is None:
        raise EventValidationError(f"unknown event type {event_type!r}", "type")
    if not model.public and not internal:
        raise EventValidationError(
            f"event type {event_type!r} is recorded by Conductor-E itself, not posted", "type"
        )
    body = {key: value for key, value in payload.items() if key != "type"}
    found = unstorable(body)
    if found is not None:
        # What jsonb cannot hold is bad input, refused here alone; checked before the model,
        # whose JSON dump would turn NaN and Infinity into null.
        field, reason = found
        raise EventValidationError(
            f"invalid {event_type} payload: field {field!r}: {reason}", field
        )
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = _field_of(error)
        raise EventValidationError(
            f"invalid {event_type} payload: field {field!r}: {error['msg']}", field
        ) from None
    data = parsed.model_dump(mode="json", exclude_unset=True, by_alias=False)
    return data


def stream_for(event_type: str, data: dict[str, Any]) -> str:
    """The stream an event belongs to: `owner/repo#N`, the agent id, or a Conductor stream."""
    kind = CATALOGUE[event_type].stream
    if kind == "issue":
        return issue_stream(data["repo"], data["issueNumber"])
    if kind == "agent":
        return str(data["agentId"])
    if kind == EXECUTION_LOG_STREAM:
        return execution_log_stream(data["executionLogId"])
    if kind == "repo":
        return repo_stream(data["repo"])
    return kind


def issue_stream(repo: str, number: int) -> str:
    return f"{repo}#{number}"


def pr_stream(repo: str, pr_number: int) -> str:
    """The stream of what is said about a PR before we know its issue: `owner/repo!N`."""
    return f"{repo}!{pr_number}"


def execution_log_stream(log_id: str) -> str:
    return f"{EXECUTION_LOG_STREAM}#{log_id}"


def repo_stream(repo: str) -> str:
    """The stream of a repo's own events (its configuration): `repo:owner/name`, lower-cased."""
    return f"repo:{repo.lower()}"


def parse_issue_stream(stream_id: str) -> tuple[str, int] | None:
    """`owner/repo#12` → ("owner/repo", 12); anything else → None."""
    match = _ISSUE_STREAM.fullmatch(stream_id)
    if match is None:
        return None
    return match.group(1), int(match.group(2))
