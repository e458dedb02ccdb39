"""The dashboard's read model: the board, the agents, spend, coordination runs.

A second screen that people leave open must stay cheap and show one consistent moment, so
everything is read from the projections (never GitHub or Kubernetes), a column a page at a
time so that the board keeps working with many thousands of issues, and judged at one `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from bot.context import AppContext
from bot.services.coordination.stuck import HELD_STATES, StuckDetector, judge
from bot.services.costs.figures import AgentModelSpend
from bot.services.costs.figures import Spend as Ledgered
from bot.services.costs.ledger import CostService
from bot.services.merge_gate.gate import MergeGate
from bot.services.merge_gate.policy import gate_state
from bot.services.work.routing import RoutingService, Verdict, no_agent, route_label
from store import catalogue
from store.events import RecordedEvent
from store.projections import Agent, ExecutionLog, Issue, Projections

# The board's columns, left to right: (key, issue state, title).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("queued", "Queued"),
    ("assigned", "Assigned"),
    ("in_progress", "In progress"),
    ("in_review", "In review"),
    ("deploying", "Deploying"),
    ("done", "Done today"),
    ("failed", "Failed / escalated"),
)
COLUMN_KEYS = tuple(key for key, _ in COLUMNS)
DEFAULT_PAGE = 25
MAX_PAGE = 200
# Rows read per query when a column is counted by paging through it.
COUNT_PAGE = 1_000
SPEND_DAYS = 30
RUN_TYPES = ("COORDINATION_RUN_COMPLETED", "COORDINATION_RUN_FAILED")
# Fields of a coordination run worth a glance; lists are shown as their length.
RUN_FIELDS = (
    "durationMs",
    "queueDepth",
    "githubFound",
    "approved",
    "withdrawn",
    "stuck",
    "requeued",
    "escalated",
    "appended",
    "summary",
    "costUsd",
)


@dataclass(frozen=True)
class Card:
    """One issue on the board, judged at the board's `now`."""

    issue: Issue
    stuck: bool
    stuck_reason: str | None
    last_run: ExecutionLog | None = None  # the agent runtime's latest execution log for it
    # A queued issue no agent can take (nobody on its route ever reported): why.
    unroutable: str | None = None
    route: str | None = None  # a queued issue's route, e.g. "python → dev-e-python"
    gate: str | None = None  # the merge gate's word on the issue's PR

    @property
    def agent(self) -> str | None:
        """Who holds it: the reviewer while in review (when one claimed it), else the assignee."""
        if self.issue.state == "in_review" and self.issue.reviewer:
            return self.issue.reviewer
        return self.issue.assignee


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    total: int
    offset: int
    cards: list[Card]
    stuck: int  # stuck cards among those returned
    unroutable: int = 0  # cards no agent can take among those returned


@dataclass(frozen=True)
class Board:
    now: datetime
    columns: list[Column]
    # Repos whose latest .rig-agent.yaml is broken: (repo, why); the last good one applies.
    broken_configs: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class AgentSpend:
    agent_id: str
    daily_usd: list[Decimal]  # one per day of `Spend.days`, oldest first
    today_usd: Decimal
    total_usd: Decimal
    budget_usd: Decimal | None
    spend: Ledgered  # the window's figures: basis (priced / reported), reported, difference
    models: list[AgentModelSpend]

    @property
    def over_budget(self) -> bool:
        return self.budget_usd is not None and self.today_usd > self.budget_usd


@dataclass(frozen=True)
class Spend:
    now: datetime
    days: list[date]
    agents: list[AgentSpend]
    price_sources: list[str]

    @property
    def today_usd(self) -> Decimal:
        return sum((a.today_usd for a in self.agents), Decimal(0))

    @property
    def total_usd(self) -> Decimal:
        return sum((a.total_usd for a in self.agents), Decimal(0))


@dataclass(frozen=True)
class Run:
    """One coordination run as the dashboard lists it."""

    position: int
    recorded_at: datetime
    ok: bool
    fields: dict[str, Any]
    errors: list[str] = field(default_factory=list)


class DashboardService:
    """Reads what the dashboard shows; every method takes one `now` from the context clock, so
    a page shows one consistent moment."""

    def __init__(
        self,
        context: AppContext,
        *,
        stuck: StuckDetector,
        routing: RoutingService,
        merge_gate: MergeGate,
        costs: CostService,
    ) -> None:
        self.context = context
        self.stuck = stuck
        self.routing = routing
        self.merge_gate = merge_gate
        self.costs = costs

    # --- the board --------------------------------------------------------------------------
    async def board(self, page: int = DEFAULT_PAGE) -> Board:
        """Every column's first `page` cards and its total."""
        now = self.context.clock()
        async with self.context.projections.snapshot() as projections:
            agents = await self._agents_by_id(now, projections)
            counts = await projections.state_counts()
            columns = [
                await self._column(projections, key, 0, page, now, agents, counts)
                for key in COLUMN_KEYS
            ]
        broken = await self.routing.broken_configs()
        return Board(now, columns, [(c.repo_name, c.error or "") for c in broken])

    async def column(self, key: str, offset: int, limit: int = DEFAULT_PAGE) -> Board:
        """One column's cards from `offset` (the "show more" of a column)."""
        if key not in COLUMN_KEYS:
            raise ValueError(f"unknown column {key!r}")
        now = self.context.clock()
        async with self.context.projections.snapshot() as projections:
            agents = await self._agents_by_id(now, projections)
            counts = await projections.state_counts()
            found = await self._column(projections, key, offset, limit, now, agents, counts)
        return Board(now, [found])

    async def _column(
        self,
        projections: Projections,
        key: str,
        offset: int,
        limit: int,
        now: datetime,
        agents: dict[str, Agent],
        counts: dict[str, int],
    ) -> Column:
        if key == "queued":
            issues = await projections.queue(limit, offset)
            total = counts.get("queued", 0)
        elif key == "done":
            # Today's only (since midnight UTC): every issue ever done would bury the board.
            done_today = await self._done_since(projections, _midnight(now))
            total, issues = len(done_today), done_today[offset : offset + limit]
        else:
            total = counts.get(key, 0)
            issues = await projections.issues(key, limit, offset) if offset < total else []
        runs = await projections.last_runs([(i.repo, i.number) for i in issues])
        last_run = {(run.repo or "").lower() + f"#{run.issue_number}": run for run in runs}
        verdicts = await self.routing.verdicts(issues) if key == "queued" else {}
        flags = no_agent(verdicts)
        cards = [
            self.card(
                issue,
                now,
                agents,
                last_run.get(issue.stream_id.lower()),
                flags.get(issue.stream_id),
                verdicts.get(issue.stream_id),
            )
            for issue in issues
        ]
        title = dict(COLUMNS)[key]
        return Column(
            key,
            title,
            total,
            offset,
            cards,
            sum(1 for c in cards if c.stuck),
            sum(1 for c in cards if c.unroutable),
        )

    async def _done_since(self, projections: Projections, since: datetime) -> list[Issue]:
        """Issues done since `since`, most recently active first.

        `issues("done")` is ordered by last activity, which is never before the moment an issue
        became done, so reading stops at the first issue last active before `since`.
        """
        found: list[Issue] = []
        offset = 0
        while True:
            page = await projections.issues("done", COUNT_PAGE, offset)
            found.extend(i for i in page if i.state_since >= since)
            if len(page) < COUNT_PAGE or page[-1].last_activity < since:
                return found
            offset += COUNT_PAGE

    def card(
        self,
        issue: Issue,
        now: datetime,
        agents: dict[str, Agent],
        last_run: ExecutionLog | None = None,
        unroutable: str | None = None,
        verdict: Verdict | None = None,
    ) -> Card:
        """Judge one issue at `now`. Stuck is what the coordination loop acts on
        (`coordination.stuck.judge`); here it is only marked, and nothing is recorded."""
        reason = self._stuck_reason(issue, now, agents)
        route = route_label(verdict.route) if verdict is not None else None
        gate = gate_state(issue, self.merge_gate.listed(issue.repo))
        return Card(issue, reason is not None, reason, last_run, unroutable, route, gate)

    def _stuck_reason(self, issue: Issue, now: datetime, agents: dict[str, Agent]) -> str | None:
        if issue.state not in HELD_STATES:
            return None
        verdict = judge(
            issue,
            agents,
            now,
            self.stuck.in_progress_limit,
            self.stuck.in_review_limit,
            self.context.stale_after,
        )
        if verdict is None:
            return None
        if verdict == "awaiting_review":
            return f"waiting for a reviewer for {_span(now - issue.last_activity)}"
        return verdict.reason

    async def _agents_by_id(self, now: datetime, projections: Projections) -> dict[str, Agent]:
        agents = await projections.agents(now, self.context.stale_after)
        return {a.agent_id: a for a in agents}

    # --- agents -----------------------------------------------------------------------------
    async def agents(self) -> tuple[datetime, list[Agent]]:
        """Every agent seen, with its stale flag, judged now."""
        now = self.context.clock()
        return now, await self.context.projections.agents(now, self.context.stale_after)

    # --- spend ------------------------------------------------------------------------------
    async def spend(self, days: int = SPEND_DAYS) -> Spend:
        """USD per agent and UTC day over the last `days` days (today included), with budgets:
        the cost service's ledger, the same figures as /cost and /api/costs/summary."""
        now = self.context.clock()
        summary = await self.costs.summary(days, top=0)
        budgets = {
            agent: Decimal(str(usd))
            for agent, usd in self.context.settings.agent_budgets_usd.items()
        }
        ledgered = {row.agent_id: row.spend for row in summary.by_agent}
        spend = []
        for agent_id in sorted(ledgered.keys() | budgets.keys()):
            daily = summary.daily.usd.get(agent_id, [Decimal(0)] * days)
            figures = ledgered.get(agent_id, Ledgered())
            spend.append(
                AgentSpend(
                    agent_id=agent_id,
                    daily_usd=daily,
                    today_usd=daily[-1],
                    total_usd=figures.best_sum,
                    budget_usd=budgets.get(agent_id),
                    spend=figures,
                    models=[m for m in summary.by_agent_model if m.agent_id == agent_id],
                )
            )
        spend.sort(key=lambda a: (-a.total_usd, a.agent_id))
        return Spend(now, summary.daily.days, spend, summary.price_sources)

    # --- coordination runs ------------------------------------------------------------------
    async def runs(self, limit: int = 10) -> list[Run]:
        """The latest coordination runs, newest first."""
        events = await self.context.store.read_recent(limit, types=list(RUN_TYPES))
        return [run_from_event(e) for e in events if e.stream_id == catalogue.COORDINATION_STREAM]


def run_from_event(event: RecordedEvent) -> Run:
    """A run's outcome and its known fields; the payload is free-form, so nothing is assumed."""
    data = event.data if isinstance(event.data, dict) else {}
    fields: dict[str, Any] = {}
    for name in RUN_FIELDS:
        value = data.get(name)
        if isinstance(value, list):
            fields[name] = len(value)
        elif isinstance(value, str | int | float | bool):
            fields[name] = value
    errors = data.get("errors")
    if isinstance(errors, str):
        errors = [errors]
    if not isinstance(errors, list):
        errors = [data["error"]] if isinstance(data.get("error"), str) else []
    return Run(
        position=event.position,
        recorded_at=event.recorded_at,
        ok=event.type == "COORDINATION_RUN_COMPLETED",
        fields=fields,
        errors=[str(e)[:300] for e in errors[:5]],
    )


def issue_url(issue: Issue, github_api_url: str) -> str:
    """The issue's page: its own http(s) URL when GitHub gave one, else built from the API's
    host (a stored `javascript:` link from before links were checked is never shown)."""
    if issue.url and issue.url.lower().startswith(("https://", "http://")):
        return issue.url
    api = github_api_url.rstrip("/")
    # GitHub Enterprise serves its API under /api/v3 of the web host.
    web = "https://github.com" if api == "https://api.github.com" else api.removesuffix("/api/v3")
    return f"{web}/{issue.repo}/issues/{issue.number}"


def _midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)


def _span(delta: timedelta) -> str:
    """Whole minutes, or seconds under a minute (short limits are used in tests and demos)."""
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min"
