"""Daily budgets: one BUDGET_THRESHOLD_CROSSED per agent, day and threshold."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from bot.context import AppContext
from bot.services.costs.budgets import check_budgets
from bot.services.costs.ledger import CostService
from store.catalogue import BUDGET_STREAM
from tests.costs.conftest import NOW, TODAY, UsageWriter


async def test_thresholds_alert_once_per_day(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter
) -> None:
    ctx = cost_context({"CONDUCTOR_AGENT_BUDGETS_USD": "dev-e-1=10,dev-e-2=10"})
    service = CostService(ctx)
    # Yesterday's spend does not count against today's budget.
    await record_usage(
        TODAY - timedelta(days=1), "dev-e-1", "claude-haiku-4-5", inputTokens=50 * 10**6
    )
    assert await check_budgets(service, NOW) == []

    # $8.50 of $10: the 80% alert, once.
    await record_usage(TODAY, "dev-e-1", "claude-haiku-4-5", inputTokens=8_500_000)
    alerts = await check_budgets(service, NOW)
    assert [(a.agent_id, a.threshold, a.spent_usd) for a in alerts] == [
        ("dev-e-1", 80, Decimal("8.5"))
    ]
    assert (
        alerts[0].text
        == "dev-e-1 has passed 80% of its daily budget: $8.50 of $10.00 on 2026-03-10"
    )
    assert await check_budgets(service, NOW) == []

    # Over $10: the 100% alert, once; the 80% one is not repeated.
    await record_usage(TODAY, "dev-e-1", "claude-haiku-4-5", inputTokens=2_000_000)
    alerts = await check_budgets(service, NOW)
    assert [(a.agent_id, a.threshold) for a in alerts] == [("dev-e-1", 100)]
    assert "reached its daily budget" in alerts[0].text
    assert await check_budgets(service, NOW) == []

    events = await ctx.store.read_stream(BUDGET_STREAM)
    assert [(e.type, e.data["agentId"], e.data["threshold"], e.data["day"]) for e in events] == [
        ("BUDGET_THRESHOLD_CROSSED", "dev-e-1", 80, "2026-03-10"),
        ("BUDGET_THRESHOLD_CROSSED", "dev-e-1", 100, "2026-03-10"),
    ]
    assert events[1].data["spent"] == 10.5 and events[1].data["budget"] == 10.0

    # The next day starts afresh.
    tomorrow = TODAY + timedelta(days=1)
    await record_usage(tomorrow, "dev-e-1", "claude-haiku-4-5", inputTokens=20 * 10**6)
    alerts = await check_budgets(service, NOW + timedelta(days=1))
    assert [(a.threshold, a.day) for a in alerts] == [(80, tomorrow), (100, tomorrow)]


async def test_agents_without_a_budget_are_not_checked(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter
) -> None:
    ctx = cost_context({"CONDUCTOR_AGENT_BUDGETS_USD": "dev-e-1=0"})
    await record_usage(TODAY, "dev-e-1", "claude-opus-4-1", inputTokens=10**7)
    await record_usage(TODAY, "dev-e-9", "claude-opus-4-1", inputTokens=10**7)
    assert await check_budgets(CostService(ctx), NOW) == []
    assert await ctx.store.read_stream(BUDGET_STREAM) == []
