"""What the agents spend: the one ledger of TOKEN_USAGE, priced, checked and budgeted.

Each row has two costs, the one the agents reported and the one priced here from the tokens
(pricing.py). The figure shown is ours where the model has a price and theirs where it has not
(`Spend.basis`); a wide gap between the two is flagged, since either an agent prices wrongly or
the price database is out of date. `CostService.ledger()` is the one place spend is computed,
so /cost, /api/costs/*, the dashboard and the budgets agree for the same agent and window.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, timedelta
from decimal import Decimal

from bot.context import AppContext
from bot.errors import InvalidInput, quoted
from bot.services.costs.figures import (
    UNATTRIBUTED,
    AgentSpend,
    CostSummary,
    DailySeries,
    IssueCost,
    IssueSpend,
    Ledger,
    LedgerRow,
    Spend,
    Tokens,
)
from bot.services.costs.pricing import Pricing
from store.catalogue import parse_issue_stream
from store.projections import IssueCostRow, Rate, UsageDay

MAX_DAYS = 366


class CostService:
    """Spend per agent, model, day and issue, the reported-vs-priced check, and budgets.

    It reads the usage projections (per day, agent and model; per issue and day), never the
    events, so a 30-day summary costs two small queries however many events there are.
    """

    def __init__(
        self,
        context: AppContext,
        *,
        pricing: Pricing | None = None,
    ) -> None:
        self.context = context
        self.pricing = pricing or context.pricing
        self.reader = context.projections

    def _today(self) -> date:
        return self.context.clock().astimezone(UTC).date()

    def window(self, days: int) -> tuple[date, date]:
        """The `days` days ending today (UTC), inclusive."""
        if not 1 <= days <= MAX_DAYS:
            raise InvalidInput(f"days must be between 1 and {MAX_DAYS}, got {days}")
        until = self._today()
        return until - timedelta(days=days - 1), until

    def price(self, row: UsageDay) -> LedgerRow:
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


def _issue_spend(row: IssueCostRow) -> IssueSpend:
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
