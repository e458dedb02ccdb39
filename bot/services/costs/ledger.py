"""What the agents spend: the one ledger of TOKEN_USAGE, priced, checked and budgeted.

Two figures for every row: the cost the agents *reported* (`costUsd` on their events) and the
cost *priced* here from the tokens at that day's price (bot/services/costs/pricing.py: genai-prices,
and CONDUCTOR_PRICES_FILE on top). The figure shown is ours where the model has a price and the
agent's reported one where it has not, labelled as such (`Spend.basis`); usage on a model with
no price (or none named) still counts its tokens for the agent. Rows where both figures are
known and differ by more than 5% (and at least a cent) are flagged: either an agent prices
wrongly or the price database is out of date.

`CostService.ledger()` is the one place spend is computed: /cost, /api/costs/*, the dashboard,
the budgets and their alerts all read it, so they show the same number for the same agent and
window. Everything reads the usage projections (per day, agent and model; per issue and day),
never the events, so a 30-day summary costs two small queries however many events there are.

Budgets are per agent per UTC day (CONDUCTOR_AGENT_BUDGETS_USD). `check_budgets` records a
BUDGET_THRESHOLD_CROSSED event at 80% and 100%, once per agent, day and threshold (an
idempotency key makes a repeat a no-op), and returns the alerts that are new.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from bot.context import AppContext
from bot.errors import InvalidInput, quoted
from bot.integrations.anthropic_messages import Completion
from bot.services.costs.pricing import Price, Pricing
from store.catalogue import BUDGET_STREAM, parse_issue_stream, stream_for, validate
from store.events import AppendResult, NewEvent

log = logging.getLogger(__name__)

CONDUCTOR_AGENT = "conductor-e"
MISMATCH_RATIO = Decimal("0.05")
MISMATCH_MIN_USD = Decimal("0.01")  # below a cent, a difference is rounding, not a finding
BUDGET_THRESHOLDS = (80, 100)
MAX_DAYS = 366


# --- what the service reads (the projection readers of store/projections.py) ----------------


class _UsageFigures(Protocol):
    @property
    def agent_id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def day(self) -> date: ...
    @property
    def events(self) -> int: ...
    @property
    def reported_events(self) -> int: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_creation_tokens(self) -> int: ...
    @property
    def cache_creation_1h_tokens(self) -> int: ...
    @property
    def cost_usd(self) -> Decimal: ...


class _IssueCost(Protocol):
    @property
    def stream_id(self) -> str: ...
    @property
    def events(self) -> int: ...
    @property
    def reported_events(self) -> int: ...
    @property
    def tokens(self) -> int: ...
    @property
    def cost_usd(self) -> Decimal: ...
    @property
    def computed_usd(self) -> Decimal | None: ...
    @property
    def best_usd(self) -> Decimal: ...
    @property
    def unpriced_events(self) -> int: ...


Rate = tuple[str, date, date, Decimal, Decimal, Decimal, Decimal, Decimal]


class CostReader(Protocol):
    """The cost readers over the usage projections (usage_daily, usage_by_issue)."""

    async def usage_by_day(
        self, since: date, until: date, agent_id: str | None = None
    ) -> Sequence[_UsageFigures]: ...

    async def issue_usage_by_day(self, stream_id: str) -> Sequence[_UsageFigures]: ...

    async def top_issues(
        self,
        since: date,
        until: date,
        rates: Sequence[Rate],
        *,
        limit: int = 10,
        agent_id: str | None = None,
    ) -> Sequence[_IssueCost]: ...


# --- what the service returns ------------------------------------------------------------------


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else float(round(value, 6))


@dataclass(frozen=True)
class Tokens:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0

    @property
    def total(self) -> int:
        return (
            self.input + self.output + self.cache_read + self.cache_write_5m + self.cache_write_1h
        )

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write_5m + other.cache_write_5m,
            self.cache_write_1h + other.cache_write_1h,
        )

    @classmethod
    def of(cls, row: _UsageFigures) -> Tokens:
        write_1h = min(row.cache_creation_1h_tokens, row.cache_creation_tokens)
        return cls(
            row.input_tokens,
            row.output_tokens,
            row.cache_read_tokens,
            row.cache_creation_tokens - write_1h,
            write_1h,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "input": self.input,
            "output": self.output,
            "cacheRead": self.cache_read,
            "cacheWrite5m": self.cache_write_5m,
            "cacheWrite1h": self.cache_write_1h,
            "total": self.total,
        }


@dataclass(frozen=True)
class Spend:
    """Cost of some usage, as reported by the agents and as computed from the price table.

    `reported_usd` is None when no event reported a cost; `computed_usd` is None when some of
    the usage has no price (unknown model). `cost_usd` is the figure to show: computed where
    known, else reported, else None ("cost unknown").
    """

    events: int = 0
    reported_events: int = 0
    tokens: Tokens = field(default_factory=Tokens)
    reported_sum: Decimal = Decimal(0)
    computed_sum: Decimal = Decimal(0)
    unpriced_events: int = 0
    best_sum: Decimal = Decimal(0)  # per row: computed where priced, else reported

    @property
    def reported_usd(self) -> Decimal | None:
        return self.reported_sum if self.reported_events else None

    @property
    def computed_usd(self) -> Decimal | None:
        return None if self.unpriced_events else self.computed_sum

    @property
    def cost_usd(self) -> Decimal | None:
        if self.computed_usd is not None:
            return self.computed_usd
        if self.unpriced_events == self.events and not self.reported_events:
            return None  # nothing priced and nothing reported: unknown, not zero
        return self.best_sum

    @property
    def basis(self) -> str:
        """What the figure rests on: "priced" (ours), "reported" (no price: the agents' own),
        "partly priced" (ours where the model has a price, theirs where not), or "unknown"."""
        if not self.unpriced_events:
            return "priced"
        if self.cost_usd is None:
            return "unknown"
        return "reported" if self.unpriced_events == self.events else "partly priced"

    @property
    def fully_reported(self) -> bool:
        return self.events > 0 and self.reported_events == self.events

    @property
    def difference_pct(self) -> Decimal | None:
        """(reported − computed) / computed, in percent, when both are complete."""
        computed = self.computed_usd
        if not self.fully_reported or computed is None or computed == 0:
            return None
        return (self.reported_sum - computed) / computed * 100

    @property
    def mismatch(self) -> bool:
        """Reported and computed cost differ by more than 5% (and at least a cent)."""
        computed = self.computed_usd
        if not self.fully_reported or computed is None:
            return False
        gap = abs(self.reported_sum - computed)
        return gap >= MISMATCH_MIN_USD and gap > MISMATCH_RATIO * computed

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.events + other.events,
            self.reported_events + other.reported_events,
            self.tokens + other.tokens,
            self.reported_sum + other.reported_sum,
            self.computed_sum + other.computed_sum,
            self.unpriced_events + other.unpriced_events,
            self.best_sum + other.best_sum,
        )

    def to_dict(self) -> dict[str, Any]:
        pct = self.difference_pct
        return {
            "events": self.events,
            "tokens": self.tokens.to_dict(),
            "costUsd": _usd(self.cost_usd),
            "basis": self.basis,
            "reportedUsd": _usd(self.reported_usd),
            "reportedEvents": self.reported_events,
            "computedUsd": _usd(self.computed_usd),
            "unpricedEvents": self.unpriced_events,
            "differencePct": None if pct is None else float(round(pct, 2)),
            "mismatch": self.mismatch,
        }


class _Tally:
    """A running Spend that sums thousands of rows without building an object per row."""

    __slots__ = ("best", "computed", "events", "reported", "reported_events", "tokens", "unpriced")

    def __init__(self) -> None:
        self.events = self.reported_events = self.unpriced = 0
        self.tokens = [0, 0, 0, 0, 0]
        self.reported = self.computed = self.best = Decimal(0)

    def add(self, spend: Spend) -> None:
        self.events += spend.events
        self.reported_events += spend.reported_events
        self.unpriced += spend.unpriced_events
        t, tokens = self.tokens, spend.tokens
        t[0] += tokens.input
        t[1] += tokens.output
        t[2] += tokens.cache_read
        t[3] += tokens.cache_write_5m
        t[4] += tokens.cache_write_1h
        self.reported += spend.reported_sum
        self.computed += spend.computed_sum
        self.best += spend.best_sum

    def spend(self) -> Spend:
        return Spend(
            self.events,
            self.reported_events,
            Tokens(*self.tokens),
            self.reported,
            self.computed,
            self.unpriced,
            self.best,
        )


@dataclass(frozen=True)
class AgentModelSpend:
    agent_id: str
    model: str  # '' when the agent named none
    spend: Spend

    @property
    def unpriced(self) -> bool:
        """Some of this usage is on a model without a price (or with no model named)."""
        return self.spend.unpriced_events > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "agentId": self.agent_id,
            "model": self.model,
            "unpricedModel": self.unpriced,
            **self.spend.to_dict(),
        }


@dataclass(frozen=True)
class AgentSpend:
    agent_id: str
    spend: Spend
    today_usd: Decimal
    budget_usd: Decimal | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "agentId": self.agent_id,
            **self.spend.to_dict(),
            "todayUsd": _usd(self.today_usd),
            "dailyBudgetUsd": _usd(self.budget_usd),
        }


UNATTRIBUTED = ""  # the usage_by_issue stream id of usage that names no repo and issue


@dataclass(frozen=True)
class IssueSpend:
    stream_id: str  # UNATTRIBUTED for usage that named no issue
    repo: str | None
    number: int | None
    events: int
    tokens: int
    reported_usd: Decimal | None
    computed_usd: Decimal | None
    best_usd: Decimal  # ours where priced, the reported cost where not
    unpriced_events: int

    @property
    def unattributed(self) -> bool:
        return self.stream_id == UNATTRIBUTED

    @property
    def cost_usd(self) -> Decimal | None:
        if self.unpriced_events == self.events and self.reported_usd is None:
            return None  # nothing priced and nothing reported: unknown, not zero
        return self.best_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "streamId": self.stream_id,
            "unattributed": self.unattributed,
            "repo": self.repo,
            "issueNumber": self.number,
            "events": self.events,
            "tokens": self.tokens,
            "costUsd": _usd(self.cost_usd),
            "reportedUsd": _usd(self.reported_usd),
            "computedUsd": _usd(self.computed_usd),
            "unpricedEvents": self.unpriced_events,
        }


@dataclass(frozen=True)
class CostSummary:
    """Spend over a window of days ending today (UTC), optionally for one agent."""

    days: int
    since: date
    until: date
    agent_id: str | None
    total: Spend
    by_agent_model: list[AgentModelSpend]
    by_agent: list[AgentSpend]
    today_usd: Decimal
    daily_average_usd: Decimal
    top_issues: list[IssueSpend]
    unknown_models: list[str]
    daily: DailySeries
    price_sources: list[str]  # what priced these figures, e.g. "genai-prices 0.2.3"

    @property
    def mismatches(self) -> list[AgentModelSpend]:
        return [row for row in self.by_agent_model if row.spend.mismatch]

    @property
    def today_vs_average(self) -> Decimal | None:
        """Today's spend as a multiple of the window's daily average (None when it is 0)."""
        if self.daily_average_usd == 0:
            return None
        return self.today_usd / self.daily_average_usd

    def to_dict(self) -> dict[str, Any]:
        ratio = self.today_vs_average
        return {
            "days": self.days,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "agentId": self.agent_id,
            "total": self.total.to_dict(),
            "todayUsd": _usd(self.today_usd),
            "dailyAverageUsd": _usd(self.daily_average_usd),
            "todayVsAverage": None if ratio is None else float(round(ratio, 3)),
            "byAgent": [row.to_dict() for row in self.by_agent],
            "byAgentModel": [row.to_dict() for row in self.by_agent_model],
            "mismatches": [row.to_dict() for row in self.mismatches],
            "topIssues": [row.to_dict() for row in self.top_issues],
            "unknownModels": self.unknown_models,
            "priceSources": self.price_sources,
        }


@dataclass(frozen=True)
class DailySeries:
    """Cost per day and agent (for the chart): `usd[agent][i]` is the cost on `days[i]`."""

    days: list[date]
    agents: list[str]
    usd: dict[str, list[Decimal]]
    unpriced_events: int

    @property
    def empty(self) -> bool:
        return not self.agents

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": [d.isoformat() for d in self.days],
            "agents": [
                {"agentId": agent, "usd": [_usd(v) for v in self.usd[agent]]}
                for agent in self.agents
            ],
            "unpricedEvents": self.unpriced_events,
        }


@dataclass(frozen=True)
class IssueCost:
    """What one issue (or the unattributed usage) cost, per agent and model, and in total."""

    stream_id: str
    by_agent_model: list[AgentModelSpend]
    by_agent: list[tuple[str, Spend]]
    total: Spend
    unknown_models: list[str]
    price_sources: list[str]

    @property
    def unattributed(self) -> bool:
        return self.stream_id == UNATTRIBUTED

    def to_dict(self) -> dict[str, Any]:
        return {
            "streamId": self.stream_id,
            "unattributed": self.unattributed,
            "total": self.total.to_dict(),
            "byAgent": [{"agentId": a, **s.to_dict()} for a, s in self.by_agent],
            "byAgentModel": [row.to_dict() for row in self.by_agent_model],
            "unknownModels": self.unknown_models,
            "priceSources": self.price_sources,
        }


@dataclass(frozen=True)
class LedgerRow:
    """One agent's usage of one model on one UTC day, priced."""

    day: date
    agent_id: str
    model: str
    spend: Spend
    price: Price | None  # None: the model has no price that day


@dataclass(frozen=True)
class Ledger:
    """Priced usage per day, agent and model over [since, until]: what every spend figure
    (/cost, /api/costs/*, the dashboard, budgets) is summed from."""

    since: date
    until: date
    rows: list[LedgerRow]

    @property
    def price_sources(self) -> list[str]:
        return sorted({row.price.source for row in self.rows if row.price is not None})

    def breakdown(self) -> _Breakdown:
        """Sum the rows per agent and model, per agent, in total, and per agent on `until`."""
        pair_tally: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
        agent_tally: dict[str, _Tally] = defaultdict(_Tally)
        on_day: dict[str, Decimal] = defaultdict(Decimal)
        total_tally = _Tally()
        unknown: set[str] = set()
        for row in self.rows:
            spend = row.spend
            pair_tally[(row.agent_id, row.model)].add(spend)
            agent_tally[row.agent_id].add(spend)
            total_tally.add(spend)
            if spend.unpriced_events:
                unknown.add(row.model)
            if row.day == self.until:
                on_day[row.agent_id] += spend.best_sum
        pairs = sorted(
            (AgentModelSpend(a, m, tally.spend()) for (a, m), tally in pair_tally.items()),
            key=lambda r: (-(r.spend.best_sum), r.agent_id, r.model),
        )
        return _Breakdown(
            pairs,
            {agent: tally.spend() for agent, tally in agent_tally.items()},
            total_tally.spend(),
            sorted(unknown),
            dict(on_day),
        )

    def series(self) -> DailySeries:
        """USD per agent and day (every day of the window, zeros too), busiest agent first."""
        days = (self.until - self.since).days + 1
        day_list = [self.since + timedelta(days=i) for i in range(days)]
        usd: dict[str, list[Decimal]] = {}
        unpriced = 0
        for row in self.rows:
            unpriced += row.spend.unpriced_events
            daily = usd.setdefault(row.agent_id, [Decimal(0)] * days)
            daily[(row.day - self.since).days] += row.spend.best_sum
        agents = sorted(usd, key=lambda a: (-sum(usd[a], Decimal(0)), a))
        return DailySeries(day_list, agents, usd, unpriced)


@dataclass(frozen=True)
class _Breakdown:
    """Priced usage summed per agent and model (most expensive first), per agent, in total."""

    pairs: list[AgentModelSpend]
    by_agent: dict[str, Spend]
    total: Spend
    unknown_models: list[str]
    on_day: dict[str, Decimal]  # per agent, on the last day of the window


@dataclass(frozen=True)
class BudgetAlert:
    agent_id: str
    day: date
    threshold: int
    spent_usd: Decimal
    budget_usd: Decimal
    position: int

    @property
    def text(self) -> str:
        word = "reached" if self.threshold >= 100 else f"passed {self.threshold}% of"
        return (
            f"{self.agent_id} has {word} its daily budget: ${self.spent_usd:.2f} of "
            f"${self.budget_usd:.2f} on {self.day.isoformat()}"
        )


# --- the service -------------------------------------------------------------------------------


class CostService:
    """Spend per agent, model, day and issue, the reported-vs-priced check, and budgets."""

    def __init__(
        self,
        context: AppContext,
        *,
        pricing: Pricing | None = None,
        reader: CostReader | None = None,
    ) -> None:
        self.context = context
        self.pricing = pricing or context.pricing
        self.reader: CostReader = reader or context.projections

    def _today(self) -> date:
        return self.context.clock().astimezone(UTC).date()

    def window(self, days: int) -> tuple[date, date]:
        """The `days` days ending today (UTC), inclusive."""
        if not 1 <= days <= MAX_DAYS:
            raise InvalidInput(f"days must be between 1 and {MAX_DAYS}, got {days}")
        until = self._today()
        return until - timedelta(days=days - 1), until

    def price(self, row: _UsageFigures) -> LedgerRow:
        """Price one projection row (one day, agent and model)."""
        tokens = Tokens.of(row)
        price = self.pricing.price_for(row.model, row.day)
        computed = (
            None
            if price is None
            else price.cost(
                tokens.input,
                tokens.output,
                tokens.cache_read,
                tokens.cache_write_5m,
                tokens.cache_write_1h,
            )
        )
        reported = Decimal(row.cost_usd) if row.reported_events else Decimal(0)
        spend = Spend(
            events=row.events,
            reported_events=row.reported_events,
            tokens=tokens,
            reported_sum=reported,
            computed_sum=computed if computed is not None else Decimal(0),
            unpriced_events=0 if computed is not None else row.events,
            best_sum=computed if computed is not None else reported,
        )
        return LedgerRow(row.day, row.agent_id, row.model, spend, price)

    async def ledger(self, since: date, until: date, agent_id: str | None = None) -> Ledger:
        """The priced usage of [since, until] (UTC days), optionally of one agent."""
        rows = await self.reader.usage_by_day(since, until, agent_id)
        return Ledger(since, until, [self.price(row) for row in rows])

    def _rates(self, models: Iterable[str], since: date, until: date) -> list[Rate]:
        """Each model's prices over the window, as the top-issues query takes them."""
        return [
            (
                model,
                start,
                end,
                p.input,
                p.output,
                p.cache_write_5m,
                p.cache_write_1h,
                p.cache_read,
            )
            for model in sorted(set(models))
            for start, end, p in self.pricing.periods(model, since, until)
        ]

    async def summary(
        self, days: int = 30, agent_id: str | None = None, *, top: int = 10
    ) -> CostSummary:
        """Spend over the last `days` days: per agent and model, per agent, per day, today
        against the window's daily average, the top issues (none when `top` is 0), models
        without a price, mismatches, and what priced it all."""
        since, until = self.window(days)
        ledger = await self.ledger(since, until, agent_id)
        breakdown = ledger.breakdown()
        today_by_agent = breakdown.on_day
        total = breakdown.total
        issues = (
            await self.reader.top_issues(
                since,
                until,
                self._rates((p.model for p in breakdown.pairs), since, until),
                limit=top,
                agent_id=agent_id,
            )
            if top > 0
            else []
        )
        budgets = self.context.settings.agent_budgets_usd
        agent_rows = [
            AgentSpend(
                agent,
                spend,
                today_by_agent.get(agent, Decimal(0)),
                Decimal(str(budgets[agent])) if agent in budgets else None,
            )
            for agent, spend in breakdown.by_agent.items()
        ]
        agent_rows.sort(key=lambda a: (-(a.spend.best_sum), a.agent_id))
        today = sum(today_by_agent.values(), Decimal(0))
        return CostSummary(
            days=days,
            since=since,
            until=until,
            agent_id=agent_id,
            total=total,
            by_agent_model=breakdown.pairs,
            by_agent=agent_rows,
            today_usd=today,
            daily_average_usd=total.best_sum / days,
            top_issues=[_issue_spend(row) for row in issues],
            unknown_models=breakdown.unknown_models,
            daily=ledger.series(),
            price_sources=ledger.price_sources,
        )

    async def daily(self, days: int = 30, agent_id: str | None = None) -> DailySeries:
        """Cost per day and agent over the last `days` days (every day present, zeros too)."""
        since, until = self.window(days)
        return (await self.ledger(since, until, agent_id)).series()

    async def issue(self, repo: str | None, number: int | None) -> IssueCost:
        """One issue's cost by agent and model, each day's usage at that day's price; with no
        repo and number, the usage that named no issue ("unattributed")."""
        if repo is None and number is None:
            stream_id = UNATTRIBUTED
        else:
            stream_id = f"{repo}#{number}"
            if parse_issue_stream(stream_id) is None:
                raise InvalidInput(
                    f"{quoted(stream_id)} is not an issue (expected owner/repo and a number)"
                )
        rows = await self.reader.issue_usage_by_day(stream_id)
        priced = [self.price(row) for row in rows]
        ledger = Ledger(min((r.day for r in priced), default=self._today()), self._today(), priced)
        breakdown = ledger.breakdown()
        agents = sorted(breakdown.by_agent.items(), key=lambda item: (-(item[1].best_sum), item[0]))
        return IssueCost(
            stream_id,
            breakdown.pairs,
            agents,
            breakdown.total,
            breakdown.unknown_models,
            ledger.price_sources,
        )

    async def check_budgets(self, now: datetime | None = None) -> list[BudgetAlert]:
        """Record BUDGET_THRESHOLD_CROSSED for each agent past 80% / 100% of today's budget.

        Each (agent, day, threshold) is recorded once; the alerts returned are the ones this
        call recorded, for the bot to post to #admin.
        """
        moment = (now or self.context.clock()).astimezone(UTC)
        day = moment.date()
        budgets = {
            agent: Decimal(str(value))
            for agent, value in self.context.settings.agent_budgets_usd.items()
            if value > 0
        }
        if not budgets:
            return []
        spent = (await self.ledger(day, day)).breakdown().on_day
        alerts: list[BudgetAlert] = []
        for agent, budget in sorted(budgets.items()):
            used = spent.get(agent, Decimal(0))
            for threshold in BUDGET_THRESHOLDS:
                if used * 100 < budget * threshold:
                    continue
                data = validate(
                    "BUDGET_THRESHOLD_CROSSED",
                    {
                        "agentId": agent,
                        "threshold": threshold,
                        "day": day.isoformat(),
                        "spent": float(round(used, 6)),
                        "budget": float(budget),
                    },
                    internal=True,
                )
                result = await self.context.store.append(
                    BUDGET_STREAM,
                    [NewEvent("BUDGET_THRESHOLD_CROSSED", data, {"source": "budgets"})],
                    idempotency_key=f"budget:{agent}:{day.isoformat()}:{threshold}",
                )
                if not result.duplicate:
                    alerts.append(
                        BudgetAlert(agent, day, threshold, used, budget, result.last_position)
                    )
        return alerts


def _issue_spend(row: _IssueCost) -> IssueSpend:
    parsed = parse_issue_stream(row.stream_id)
    return IssueSpend(
        stream_id=row.stream_id,
        repo=parsed[0] if parsed else None,
        number=parsed[1] if parsed else None,
        events=row.events,
        tokens=row.tokens,
        reported_usd=row.cost_usd if row.reported_events else None,
        computed_usd=row.computed_usd,
        best_usd=row.best_usd,
        unpriced_events=row.unpriced_events,
    )


async def record_completion_usage(
    context: AppContext,
    completion: Completion,
    *,
    repo: str | None = None,
    issue_number: int | None = None,
    pricing: Pricing | None = None,
) -> AppendResult:
    """Record Conductor-E's own model call as TOKEN_USAGE of agent `conductor-e`.

    `costUsd` is our computed cost at today's price; it is left out (cost unknown) when the
    model has no price, never sent as 0. The message id makes a retried record a no-op.
    """
    table = pricing or context.pricing
    day = context.clock().astimezone(UTC).date()
    write_1h = min(completion.cache_creation_1h_tokens, completion.cache_creation_tokens)
    computed = table.cost(
        completion.model,
        day,
        completion.input_tokens,
        completion.output_tokens,
        completion.cache_read_tokens,
        completion.cache_creation_tokens - write_1h,
        write_1h,
    )
    payload: dict[str, Any] = {
        "agentId": CONDUCTOR_AGENT,
        "model": completion.model,
        "inputTokens": completion.input_tokens,
        "outputTokens": completion.output_tokens,
        "cacheReadTokens": completion.cache_read_tokens,
        "cacheCreationTokens": completion.cache_creation_tokens,
        "cacheCreation1hTokens": write_1h,
    }
    if computed is not None:
        payload["costUsd"] = float(round(computed, 8))
    else:
        log.warning("no price for model %r: its cost is recorded as unknown", completion.model)
    if repo is not None and issue_number is not None:
        payload["repo"] = repo
        payload["issueNumber"] = issue_number
    data = validate("TOKEN_USAGE", payload)
    key = f"usage:{CONDUCTOR_AGENT}:{completion.message_id}" if completion.message_id else None
    return await context.store.append(
        stream_for("TOKEN_USAGE", data),
        [NewEvent("TOKEN_USAGE", data, {"source": "conductor-e"})],
        idempotency_key=key,
    )
