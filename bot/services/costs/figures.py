"""The ledger's figures: tokens, spend with both costs (reported and priced), and what the
cost service returns (per agent and model, per day, per issue), each with its JSON form."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from bot.services.costs.pricing import Price
from store.projections import UsageDay

MISMATCH_RATIO = Decimal("0.05")
MISMATCH_MIN_USD = Decimal("0.01")  # below a cent, a difference is rounding, not a finding


def mismatched(reported: Decimal | None, computed: Decimal | None) -> bool:
    """Reported and computed cost differ by more than 5% (and at least a cent)."""
    if reported is None or computed is None:
        return False
    gap = abs(reported - computed)
    return gap >= MISMATCH_MIN_USD and gap > MISMATCH_RATIO * computed


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
    def of(cls, row: UsageDay) -> Tokens:
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
        return self.fully_reported and mismatched(self.reported_sum, self.computed_usd)

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
    def mismatch(self) -> bool:
        return mismatched(self.reported_usd, self.computed_usd)

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
