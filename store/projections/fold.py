"""The projection's rules in Python: `Replay.apply` is conductor_project, event for event.

The rebuild folds every event through it at once instead of calling the plpgsql per event. The
two must stay the same rules: a change to one needs the same change in the other, and
tests/store/test_replay.py compares their tables byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from store.projections.event_lines import (
    AGENT,
    HB_CURRENT_ISSUE,
    HB_CURRENT_REPO,
    HB_DETAILS,
    HB_STATUS,
    ISSUE_REPO_KEY,
    LABELS,
    LINKED_FROM,
    POSITION,
    PR_DATA,
    PR_NUMBER,
    PRIORITY,
    RC_CONFIG,
    RC_ERROR,
    RC_PRESENT,
    RC_REPO,
    RC_REPO_KEY,
    RC_ROUTE_KEY,
    RC_SHA,
    RECORDED_AT,
    RUN_ENTRIES,
    RUN_ID,
    RUN_ISSUE,
    RUN_PR_NUMBER,
    RUN_REPO,
    RUN_REPO_KEY,
    RUN_STATUS,
    RUN_STEP,
    RUN_TOTALS,
    RUN_VERSION,
    ST_ACTOR,
    ST_REASON,
    STREAM_ID,
    TITLE,
    TYPE,
    URL,
    US_DAY,
    US_ISSUE,
    US_MODEL,
    US_REPO,
    US_REPO_KEY,
    detail,
)
from store.projections.pgtext import NULL, int_field, jsonb_concat, split_part
from store.projections.rows import (
    Agent,
    Issue,
    IssueUsageKey,
    Run,
    Tie,
    UsageKey,
    UsageSums,
    add_usage,
)


# --- the issue columns each type sets (conductor_project's UPDATE of issues) -------------------
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


def _assigned(issue: Issue, e: list[str]) -> None:
    issue.assignee = e[AGENT]
    issue.attempt += 1
    issue.requeued_from = NULL  # the next assignment clears it


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


# The CASE columns of the issue's UPDATE (assignee, attempt, reviewer, review_state, escalated,
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
# The states in which a requeue takes the issue back from its assignee, and those in
# which a heartbeat from another agent does not make the issue its current one.
_REQUEUED_FROM = frozenset(("assigned", "in_progress", "in_review"))
_LOST_STATES = frozenset(("assigned", "in_progress"))


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
        """conductor_project(e): holds and pauses; usage; runs; else the issue's state machine,
        its agents, PR streams and links, the repo configurations; then the heartbeat check."""
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
            self.pending.pop(str(int_field(e[LINKED_FROM])), None)
        if event_type == "REPO_CONFIG_CHANGED" or event_type == "REPO_CONFIG_INVALID":
            self._repo_config(e, event_type)
        elif event_type == "HEARTBEAT":
            self._heartbeat_check(e[AGENT])

    # --- holds and pauses ---------------------------------------------------------------------
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

    # --- repo configurations ------------------------------------------------------------------
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

    # --- issues and agents --------------------------------------------------------------------
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
                # The agent it is taken back from, read before the update.
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
            pr_number = int_field(e[PR_NUMBER])
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
            # Working on nothing it can name: no current issue (not "#0").
            self._set_current(agent, NULL)
        else:
            self._set_current(agent, NULL if NULL in (repo, number) else f"{repo}#{number}")

    def _heartbeat_check(self, agent_id: str) -> None:
        """A heartbeat naming an issue that is no longer the agent's (requeued, or given
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

    # --- conductor_issue_of, usage, runs -----------------------------------------------------
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
        add_usage(self.usage_daily, (day, agent_id, repo, model), e[POSITION], usage)
        add_usage(self.usage_by_issue, (stream, day, agent_id, model), e[POSITION], usage)

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
            pr_number = int_field(run[RUN_PR_NUMBER])
            found.pr_number = NULL if not pr_number else str(pr_number)
            found.completed_at = e[RECORDED_AT]
        else:
            return  # another EXECUTION_LOG_ type: nothing
        found.version = run[RUN_VERSION]
        found.position = e[POSITION]
