"""Read-only questions about the work: the queue, one issue's story, recent events, agents.

Discord-free: the cogs parse options, call one of these and render what comes back. Bad input
raises InvalidInput, an unknown issue NotFound; the store's own errors (database down) pass
through to the one error mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from bot.context import AppContext
from bot.errors import InvalidInput, NotFound, quoted
from bot.services.merge_gate.gate import MergeGate
from bot.services.merge_gate.policy import gate_state
from bot.services.work.routing import Route, RoutingService, config_note
from store import catalogue
from store.events import RecordedEvent
from store.projections import Agent, ExecutionLog, Issue

_REPO = re.compile(catalogue.REPO_PATTERN)
_GITHUB_URL = re.compile(
    r"^https?://github\.com/([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/(?:issues|pull)/([1-9][0-9]{0,9})/?$"
)
_SHORT_REF = re.compile(r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)\s*#\s*([1-9][0-9]{0,9})$")

MAX_EVENTS = 50
MAX_PAGE = 25
MAX_RUNS = 5
AUTOCOMPLETE_SCAN = 500

_WAITS_FOR = {
    "assigned": "the agent to start work",
    "in_progress": "a pull request from the agent",
    "in_review": "the review",
    "deploying": "the deployment and its checks",
    "done": "nothing: it is done",
    "failed": "a person: it failed",
    "withdrawn": "nothing: it was withdrawn",
}


def parse_issue_ref(text: str) -> str:
    """`owner/repo#12` or a GitHub issue URL → the stream id `owner/repo#12`."""
    value = text.strip()
    for pattern in (_SHORT_REF, _GITHUB_URL):
        found = pattern.match(value)
        if found:
            return catalogue.issue_stream(found.group(1), int(found.group(2)))
    raise InvalidInput(
        f"{quoted(value)} is not an issue: use owner/repo#123 or the issue's GitHub URL"
    )


def check_repo(repo: str | None) -> str | None:
    if repo is None or not repo.strip():
        return None
    repo = repo.strip()
    if not _REPO.fullmatch(repo):
        raise InvalidInput(f"{repo[:100]!r} is not a repository: use owner/repo")
    return repo


@dataclass(frozen=True)
class QueuePage:
    issues: list[Issue]
    offset: int
    page_size: int
    has_next: bool
    total: int | None  # known when the queue is not filtered by repo
    repo: str | None

    @property
    def page(self) -> int:
        return self.offset // self.page_size + 1

    @property
    def pages(self) -> int | None:
        if self.total is None:
            return None
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True)
class QueueExplanation:
    issue: Issue
    rank: int | None  # place in the queue when queued
    queued: int
    ahead_by_priority: dict[str, int]
    top: Issue | None
    reasons: list[str]
    route: Route | None = None  # where routing sends it (None: not asked, it is not queued)


@dataclass(frozen=True)
class Timeline:
    issue: Issue | None
    stream_id: str
    events: list[RecordedEvent]
    runs: list[ExecutionLog] = field(default_factory=list)  # newest first
    gate: str | None = None  # the merge gate's word on its PR


class QueryService:
    """The questions the query commands ask of the projections and the events."""

    def __init__(self, context: AppContext, routing: RoutingService, merge_gate: MergeGate) -> None:
        self.context = context
        self.routing = routing
        self.merge_gate = merge_gate

    async def queue_page(self, repo: str | None, offset: int, page_size: int = 10) -> QueuePage:
        """One page of the priority queue (optionally for one repo)."""
        repo = check_repo(repo)
        page_size = max(1, min(page_size, MAX_PAGE))
        offset = max(0, offset)
        rows = await self.context.projections.queue(limit=page_size + 1, offset=offset, repo=repo)
        total = None
        if repo is None:
            total = sum((await self.context.projections.queue_depth()).values())
        return QueuePage(rows[:page_size], offset, page_size, len(rows) > page_size, total, repo)

    async def queue_depth(self) -> int:
        return sum((await self.context.projections.queue_depth()).values())

    async def why(self, reference: str) -> QueueExplanation:
        """Why an issue is (or is not) at the top of the queue, and what it waits for."""
        stream_id = parse_issue_ref(reference)
        issue = await self.context.projections.issue(stream_id)
        if issue is None:
            raise NotFound(f"{stream_id} is not known: it was never approved for the agents")
        depth = await self.context.projections.queue_depth()
        top_rows = await self.context.projections.queue(limit=1)
        top = top_rows[0] if top_rows else None
        rank = None
        route = None
        reasons: list[str] = []
        ahead: dict[str, int] = {}
        if issue.held:
            by = f" by {issue.held_by}" if issue.held_by else ""
            why = f" ({issue.held_reason})" if issue.held_reason else ""
            reasons.append(f"It is held{by}{why}: no agent gets it until it is unheld.")
        if issue.state == "queued":
            # None only if the issue left the queue between the two reads.
            rank = await self.context.projections.queue_rank(stream_id) or 1
            order = list(catalogue.PRIORITIES)
            mine = order.index(issue.priority) if issue.priority in order else len(order)
            for priority in order[:mine]:
                if depth.get(priority):
                    ahead[priority] = depth[priority]
            if rank == 1:
                reasons.append(
                    "It is at the top: the next agent of its route to ask for work gets it."
                )
            else:
                reasons.append(f"It is number {rank} of {sum(depth.values())} in the queue.")
                if ahead:
                    parts = ", ".join(f"{n} {p}" for p, n in ahead.items())
                    reasons.append(f"Issues of higher priority come first: {parts}.")
                same = rank - 1 - sum(ahead.values())
                if same > 0:
                    reasons.append(
                        f"{same} {issue.priority} issue(s) were approved earlier and go first."
                    )
            if issue.attempt > 0:
                reasons.append(f"It was tried {issue.attempt} time(s) before and requeued.")
            route, routing = await self._routing(issue)
            reasons.extend(routing)
        else:
            who = issue.assignee or issue.reviewer
            state = issue.state.replace("_", " ")
            reasons.append(
                f"It is not in the queue: it is {state}" + (f" ({who})." if who else ".")
            )
            reasons.append(f"It waits for {_WAITS_FOR.get(issue.state, 'its next step')}.")
        if issue.escalated:
            reasons.append("It was escalated and waits for a person.")
        if issue.human_gate:
            reasons.append("A human gate is open: it waits for a person's approval.")
        return QueueExplanation(issue, rank, sum(depth.values()), ahead, top, reasons, route)

    async def _routing(self, issue: Issue) -> tuple[Route, list[str]]:
        """Where routing sends a queued issue and who on that route could take it now."""
        verdict = (await self.routing.verdicts([issue]))[issue.stream_id]
        reasons = list(verdict.reasons)
        note = config_note(await self.context.projections.repo_config(issue.repo))
        if note is not None:
            reasons.append(note)
        return verdict.route, reasons

    async def timeline(self, reference: str) -> Timeline:
        """An issue's lifecycle: every event of its stream, oldest first, and its latest runs
        (the agent runtime's execution logs)."""
        stream_id = parse_issue_ref(reference)
        events = await self.context.store.read_stream(stream_id)
        issue = await self.context.projections.issue(stream_id)
        repo, number = stream_id.split("#")
        runs = await self.context.projections.execution_logs(repo, int(number), MAX_RUNS)
        if not events and issue is None and not runs:
            raise NotFound(f"{stream_id} has no events")
        gate = None
        if issue is not None:
            gate = gate_state(issue, self.merge_gate.listed(issue.repo), events)
        return Timeline(issue, stream_id, events, runs, gate)

    async def agent_choices(self, typed: str, limit: int = 25) -> list[str]:
        """Known agents whose id contains what was typed (autocomplete)."""
        needle = typed.strip().lower()
        agents = await self.context.projections.agents(
            self.context.clock(), self.context.stale_after
        )
        return [a.agent_id for a in agents if needle in a.agent_id.lower()][:limit]

    async def recent_events(self, event_type: str | None, limit: int) -> list[RecordedEvent]:
        """The latest events, newest first, optionally of one type."""
        if not 1 <= limit <= MAX_EVENTS:
            raise InvalidInput(f"limit must be between 1 and {MAX_EVENTS}")
        types = None
        if event_type:
            wanted = event_type.strip().upper()
            if wanted not in catalogue.CATALOGUE:
                raise InvalidInput(f"{event_type[:60]!r} is not an event type")
            types = [wanted]
        return await self.context.store.read_recent(limit, types=types)

    async def agents(self) -> list[Agent]:
        """Every agent seen, with `stale` when its heartbeats stopped."""
        return await self.context.projections.agents(self.context.clock(), self.context.stale_after)

    def now(self) -> datetime:
        return self.context.clock()

    async def issue_choices(self, typed: str, limit: int = 25) -> list[str]:
        """Known issues whose reference contains what the user typed (recent ones first)."""
        needle = typed.strip().lower()
        found: list[str] = []
        for issue in await self.context.projections.issues(limit=AUTOCOMPLETE_SCAN):
            if needle in issue.stream_id.lower() or (
                issue.title and needle and needle in issue.title.lower()
            ):
                found.append(issue.stream_id)
                if len(found) >= limit:
                    break
        return found

    async def repo_choices(self, typed: str, limit: int = 25) -> list[str]:
        """Repositories with known issues, matching what the user typed."""
        needle = typed.strip().lower()
        repos = set(self.context.settings.managed_repos)
        for issue in await self.context.projections.issues(limit=AUTOCOMPLETE_SCAN):
            repos.add(issue.repo)
        return sorted(r for r in repos if needle in r.lower())[:limit]

    @staticmethod
    def event_type_choices(typed: str, limit: int = 25) -> list[str]:
        needle = typed.strip().upper()
        return [name for name in catalogue.CATALOGUE if needle in name][:limit]
