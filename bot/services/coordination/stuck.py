"""Stuck work: find it, tell #admin (AGENT_STUCK), and put the issue back or escalate it.

An agent that dies or stalls would otherwise hold its issue for ever. Each coordination run
judges every held issue by how long it has been silent (`judge`), hands it back to the queue
for another agent, or escalates it to a person once `max_attempts` attempts have failed; each
episode is recorded once, however often the run is repeated or cut short.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from bot.context import AppContext
from bot.services.dispatch.dispatcher import DispatchService
from store import catalogue
from store.dispatch import Outbox
from store.errors import ConcurrencyError, DatabaseUnavailableError, StoreError
from store.events import NewEvent
from store.projections import Agent, Issue

log = logging.getLogger(__name__)

METADATA = {"actor": "conductor-e", "source": "stuck-detection"}
HELD_STATES = ("assigned", "in_progress", "in_review")
ISSUE_PAGE = 1_000

Kind = Literal["in_progress", "in_review", "stale_heartbeat"]
Action = Literal["requeue", "escalate"]


@dataclass(frozen=True)
class StuckIssue:
    """One stuck issue, as judged at `now`."""

    issue: Issue
    agent_id: str | None
    kind: Kind
    idle: timedelta
    reason: str

    @property
    def stream_id(self) -> str:
        return self.issue.stream_id


@dataclass
class StuckReport:
    """What one pass found and did; lists hold issue stream ids."""

    stuck: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)  # AGENT_STUCK appended (new)
    requeued: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    raced: list[str] = field(default_factory=list)  # the agent acted while we judged
    awaiting_review: list[str] = field(default_factory=list)
    appended: int = 0
    errors: list[str] = field(default_factory=list)


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


class StuckDetector:
    """Finds stuck work in the projections and records what is done about it."""

    def __init__(self, context: AppContext, dispatch: DispatchService | None = None) -> None:
        self.context = context
        self.dispatch = dispatch

    @property
    def in_progress_limit(self) -> timedelta:
        return timedelta(minutes=self.context.settings.stuck_in_progress_minutes)

    @property
    def in_review_limit(self) -> timedelta:
        return timedelta(minutes=self.context.settings.stuck_in_review_minutes)

    async def held_issues(self) -> list[Issue]:
        """Every issue an agent holds (assigned, in progress, in review)."""
        held: list[Issue] = []
        for state in HELD_STATES:
            offset = 0
            while True:
                page = await self.context.projections.issues(
                    state=state, limit=ISSUE_PAGE, offset=offset
                )
                held.extend(page)
                if len(page) < ISSUE_PAGE:
                    break
                offset += ISSUE_PAGE
        return held

    async def find(self, now: datetime) -> tuple[list[StuckIssue], list[str]]:
        """The stuck issues at `now`, and the PRs waiting for a reviewer past the limit."""
        stale_after = self.context.stale_after
        agents = {a.agent_id: a for a in await self.context.projections.agents(now, stale_after)}
        found: list[StuckIssue] = []
        awaiting: list[str] = []
        for issue in await self.held_issues():
            judged = judge(
                issue, agents, now, self.in_progress_limit, self.in_review_limit, stale_after
            )
            if isinstance(judged, StuckIssue):
                found.append(judged)
            elif judged == "awaiting_review":
                awaiting.append(issue.stream_id)
        found = await self._with_push(found, now)
        found.sort(key=lambda s: s.stream_id)
        return found, sorted(awaiting)

    async def _with_push(self, found: list[StuckIssue], now: datetime) -> list[StuckIssue]:
        """Say so when a stuck assignment was pushed to the agent's stream: an agent scaled to
        zero never heartbeats, so the window runs from the push, and the entry's state (never
        read, or read and not acknowledged) says where it stopped."""
        assigned = [s.stream_id for s in found if s.issue.state == "assigned"]
        if not assigned:
            return found
        pushed = {e.stream_id: e for e in await Outbox(self.context.pool).sent_open(assigned)}
        unread: set[str] = set()
        if self.dispatch is not None:
            unread = {
                entry.entry_id
                for _, entry in self.dispatch.not_picked_up(timedelta(0))
                if not entry.delivered
            }
        result = []
        for stuck in found:
            entry = pushed.get(stuck.stream_id)
            if entry is not None and entry.agent_id == stuck.agent_id and entry.sent_at:
                ago = _minutes(now - entry.sent_at)
                how = "never read" if entry.entry_id in unread else "not picked up"
                reason = (
                    f"pushed to assignments:{entry.agent_id} {ago} min ago, {how}; {stuck.reason}"
                )
                stuck = replace(stuck, reason=reason)
            result.append(stuck)
        return result

    async def run(self, now: datetime, *, dry_run: bool = False) -> StuckReport:
        """Find stuck work and (unless `dry_run`) record AGENT_STUCK and requeue or escalate.

        One issue's failure to record is noted in `errors` and does not stop the others; a
        database outage raises (the run fails as a whole).
        """
        report = StuckReport()
        found, report.awaiting_review = await self.find(now)
        for stuck in found:
            report.stuck.append(stuck.stream_id)
            if dry_run:
                continue
            try:
                await self._handle(stuck, report)
            except DatabaseUnavailableError:
                raise
            except StoreError as exc:
                # One issue that cannot be recorded (a schema refusal, say) spares the others.
                report.errors.append(f"{stuck.stream_id}: could not record stuck work: {exc}")
                log.error("stuck: %s: %s", stuck.stream_id, exc)
        return report

    async def _handle(self, stuck: StuckIssue, report: StuckReport) -> None:
        issue = stuck.issue
        events = await self.context.store.read_stream(issue.stream_id)
        if not events or events[-1].position != issue.position:
            # Something happened on the issue after the projection row we judged.
            report.raced.append(issue.stream_id)
            return
        version = events[-1].version
        attempts = attempts_since_requeue(t.type for t in events)
        max_attempts = self.context.settings.max_attempts
        # Below the limit the issue goes back to the queue (ISSUE_UNASSIGNED); at it, ESCALATED
        # takes it out of the queue (state `failed`) until a person requeues it.
        action: Action = "escalate" if attempts >= max_attempts else "requeue"
        # The episode is the issue at the position of its last event: both records below are
        # keyed by it, so a crash between them or a second run repeats nothing.
        episode = f"{issue.stream_id}:{issue.position}"

        if stuck.agent_id is not None:
            data = catalogue.validate(
                "AGENT_STUCK",
                {
                    "agentId": stuck.agent_id,
                    "reason": stuck.reason,
                    "repo": issue.repo,
                    "issueNumber": issue.number,
                    "kind": stuck.kind,
                    "idleMinutes": _minutes(stuck.idle),
                    "attempt": attempts,
                    "action": action,
                },
                internal=True,
            )
            result = await self.context.store.append(
                stuck.agent_id,
                [NewEvent("AGENT_STUCK", data, dict(METADATA))],
                idempotency_key=f"stuck:{episode}",
            )
            if not result.duplicate:
                report.recorded.append(issue.stream_id)
                report.appended += 1

        event_type, payload = _issue_event(stuck, action, attempts, max_attempts)
        data = catalogue.validate(event_type, payload, internal=True)
        try:
            # At the version judged: if the agent spoke up meanwhile, the issue is left alone.
            result = await self.context.store.append(
                issue.stream_id,
                [NewEvent(event_type, data, dict(METADATA))],
                expected_version=version,
                idempotency_key=f"stuck-action:{episode}",
            )
        except ConcurrencyError:
            report.raced.append(issue.stream_id)
            return
        if not result.duplicate:
            report.appended += 1
        (report.escalated if action == "escalate" else report.requeued).append(issue.stream_id)
        log.info(
            "stuck: %s (%s, %s) → %s",
            issue.stream_id,
            stuck.agent_id or "no agent",
            stuck.kind,
            event_type,
        )


def judge(
    issue: Issue,
    agents: dict[str, Agent],
    now: datetime,
    in_progress_limit: timedelta,
    in_review_limit: timedelta,
    stale_after: timedelta,
) -> StuckIssue | Literal["awaiting_review"] | None:
    """Whether one held issue is stuck at `now`.

    Silence is the issue's `last_activity`: any event on its stream. Heartbeats are not
    progress; they prove the process is alive, not that the work moves.

    * `assigned` or `in_progress`, silent past `in_progress_limit`: the assignee is stuck
      (`assigned` counts, or an agent that claims and dies before WORK_STARTED would hold the
      issue for ever);
    * `in_review`, silent past `in_review_limit`: the reviewer is stuck; a PR no reviewer has
      claimed names nobody to blame, so it is only "awaiting_review" (reported, not recorded);
    * the holder is stale (no HEARTBEAT within `stale_after`) and the issue was silent as long:
      stuck whatever the limit. An agent that never sent a heartbeat is not judged by them.
    """
    idle = now - issue.last_activity
    kind: Kind
    if issue.state == "in_review":
        holder, limit, kind = issue.reviewer, in_review_limit, "in_review"
    else:
        holder, limit, kind = issue.assignee, in_progress_limit, "in_progress"

    agent = agents.get(holder) if holder else None
    if (
        agent is not None
        and agent.last_heartbeat is not None
        and agent.stale
        and idle > stale_after
    ):
        silent = now - agent.last_heartbeat
        return StuckIssue(
            issue,
            holder,
            "stale_heartbeat",
            idle,
            f"{holder} stopped sending heartbeats {_minutes(silent)} min ago while holding "
            f"{issue.stream_id} ({issue.state})",
        )
    if idle <= limit:
        return None
    if issue.state == "in_review" and holder is None:
        return "awaiting_review"
    what = "review" if kind == "in_review" else "work"
    return StuckIssue(
        issue,
        holder,
        kind,
        idle,
        f"no {what} event on {issue.stream_id} for {_minutes(idle)} min "
        f"({issue.state}, limit {_minutes(limit)} min)",
    )


def attempts_since_requeue(types: Any) -> int:
    """ISSUE_ASSIGNED events since the last ISSUE_REQUEUED; at least 1 for a held issue (an
    agent may start work without a recorded assignment).

    Each assignment starts an attempt, and an attempt fails when the issue goes back to the
    queue undone (found stuck, or given up with ISSUE_UNASSIGNED): so an issue found stuck on
    its n-th attempt has n failed ones. A requeue by a person starts the count again, which the
    projection's `attempt` counter does not; hence the stream, read only for a stuck issue.
    """
    count = 0
    for event_type in types:
        if event_type == "ISSUE_REQUEUED":
            count = 0
        elif event_type == "ISSUE_ASSIGNED":
            count += 1
    return max(1, count)


def _issue_event(
    stuck: StuckIssue, action: Action, attempts: int, max_attempts: int
) -> tuple[str, dict[str, Any]]:
    issue = stuck.issue
    base: dict[str, Any] = {"repo": issue.repo, "issueNumber": issue.number}
    if stuck.agent_id is not None:
        base["agentId"] = stuck.agent_id
    if action == "escalate":
        return "ESCALATED", {
            **base,
            "reason": f"attempt {attempts} of {max_attempts} failed: {stuck.reason}. "
            "Out of the queue until a person requeues it.",
        }
    return "ISSUE_UNASSIGNED", {
        **base,
        "reason": f"attempt {attempts} of {max_attempts} failed: {stuck.reason}",
    }
