"""Daily budgets per agent (CONDUCTOR_AGENT_BUDGETS_USD): BUDGET_THRESHOLD_CROSSED at 80% and
100% of a UTC day's budget, recorded once per agent, day and threshold (an idempotency key
makes a repeat a no-op); the coordination loop posts the alerts that are new."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from bot.services.costs.ledger import CostService
from store.catalogue import BUDGET_STREAM, validate
from store.events import NewEvent

BUDGET_THRESHOLDS = (80, 100)


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


async def check_budgets(costs: CostService, now: datetime | None = None) -> list[BudgetAlert]:
    """Record BUDGET_THRESHOLD_CROSSED for each agent past 80% / 100% of today's budget.

    Each (agent, day, threshold) is recorded once; the alerts returned are the ones this
    call recorded, for the bot to post to #admin.
    """
    moment = (now or costs.context.clock()).astimezone(UTC)
    day = moment.date()
    budgets = {
        agent: Decimal(str(value))
        for agent, value in costs.context.settings.agent_budgets_usd.items()
        if value > 0
    }
    if not budgets:
        return []
    spent = (await costs.ledger(day, day)).breakdown().on_day
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
            result = await costs.context.store.append(
                BUDGET_STREAM,
                [NewEvent("BUDGET_THRESHOLD_CROSSED", data, {"source": "budgets"})],
                idempotency_key=f"budget:{agent}:{day.isoformat()}:{threshold}",
            )
            if not result.duplicate:
                alerts.append(
                    BudgetAlert(agent, day, threshold, used, budget, result.last_position)
                )
    return alerts
