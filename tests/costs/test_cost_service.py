"""The cost service over real PostgreSQL: figures per agent, model, day and issue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest

from bot.context import AppContext
from bot.errors import InvalidInput
from bot.services.costs.ledger import CostService
from bot.services.costs.pricing import FILE_SOURCE, PriceFile, Pricing
from store.projections import Projections
from tests.costs.conftest import TODAY, UsageWriter

YESTERDAY = TODAY - timedelta(days=1)


async def test_summary_prices_each_agent_and_model(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter
) -> None:
    ctx = cost_context({"CONDUCTOR_AGENT_BUDGETS_USD": "dev-e-1=5"})
    # dev-e-1 on Haiku: 1,200 in / 300 out = $0.0027, reported correctly, twice.
    for day in (YESTERDAY, TODAY):
        await record_usage(
            day,
            "dev-e-1",
            "claude-haiku-4-5",
            inputTokens=1200,
            outputTokens=300,
            costUsd=0.0027,
            repo="acme/app",
            issueNumber=12,
        )
    # review-e-1 on Sonnet with cache reads and both kinds of cache writes, no reported cost.
    await record_usage(
        TODAY,
        "review-e-1",
        "claude-sonnet-4-5-20250929",
        inputTokens=10_000,
        outputTokens=2_000,
        cacheReadTokens=50_000,
        cacheCreationTokens=5_000,
        cacheCreation1hTokens=1_000,
        repo="acme/app",
        issueNumber=12,
    )
    # Outside the window: not counted.
    await record_usage(
        TODAY - timedelta(days=40),
        "dev-e-1",
        "claude-haiku-4-5",
        inputTokens=10**6,
        outputTokens=0,
        costUsd=1.0,
    )

    summary = await CostService(ctx).summary(30)

    assert summary.since == TODAY - timedelta(days=29) and summary.until == TODAY
    rows = {(r.agent_id, r.model): r.spend for r in summary.by_agent_model}
    haiku = rows[("dev-e-1", "claude-haiku-4-5")]
    assert haiku.events == 2
    assert haiku.computed_usd == Decimal("0.0054")
    assert haiku.reported_usd == Decimal("0.0054")
    assert not haiku.mismatch
    sonnet = rows[("review-e-1", "claude-sonnet-4-5-20250929")]
    # 10k×3 + 2k×15 + 50k×0.30 + 4k×3.75 + 1k×6, per million.
    assert sonnet.computed_usd == Decimal("0.096")
    assert sonnet.reported_usd is None  # not reported is not "reported 0"
    assert sonnet.cost_usd == Decimal("0.096")
    assert sonnet.tokens.cache_write_5m == 4_000 and sonnet.tokens.cache_write_1h == 1_000

    assert summary.total.cost_usd == Decimal("0.1014")
    assert summary.today_usd == Decimal("0.0987")
    assert summary.daily_average_usd == Decimal("0.1014") / 30
    assert summary.today_vs_average == Decimal("0.0987") / (Decimal("0.1014") / 30)
    agents = {a.agent_id: a for a in summary.by_agent}
    assert agents["dev-e-1"].today_usd == Decimal("0.0027")
    assert agents["dev-e-1"].budget_usd == Decimal(5)
    assert [a.agent_id for a in summary.by_agent] == ["review-e-1", "dev-e-1"]

    assert [(i.repo, i.number) for i in summary.top_issues] == [("acme/app", 12)]
    assert summary.top_issues[0].computed_usd == Decimal("0.1014")
    assert summary.top_issues[0].reported_usd == Decimal("0.0054")

    body = summary.to_dict()
    assert body["total"]["costUsd"] == pytest.approx(0.1014)
    assert body["byAgentModel"][0]["agentId"] == "review-e-1"
    assert body["unknownModels"] == []


async def test_one_agent_only(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter
) -> None:
    ctx = cost_context()
    await record_usage(TODAY, "dev-e-1", "claude-haiku-4-5", inputTokens=1000, outputTokens=0)
    await record_usage(
        TODAY,
        "dev-e-2",
        "claude-haiku-4-5",
        inputTokens=2000,
        outputTokens=0,
        repo="acme/app",
        issueNumber=3,
    )
    summary = await CostService(ctx).summary(7, agent_id="dev-e-2")
    assert [a.agent_id for a in summary.by_agent] == ["dev-e-2"]
    assert summary.total.cost_usd == Decimal("0.002")
    assert [i.stream_id for i in summary.top_issues] == ["acme/app#3"]


async def test_reported_cost_more_than_5_percent_off_is_flagged(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter
) -> None:
    ctx = cost_context()
    # 1M input on Haiku is $1.00: one agent reports $1.04 (within 5%), one $1.20 (off).
    await record_usage(TODAY, "dev-e-1", "claude-haiku-4-5", inputTokens=10**6, costUsd=1.04)
    await record_usage(TODAY, "dev-e-2", "claude-haiku-4-5", inputTokens=10**6, costUsd=1.20)
    # A fraction of a cent off is rounding, not a finding.
    await record_usage(TODAY, "dev-e-3", "claude-haiku-4-5", inputTokens=100, costUsd=0.0002)

    summary = await CostService(ctx).summary(1)

    flagged = {(r.agent_id, round(r.spend.difference_pct or 0, 1)) for r in summary.mismatches}
    assert flagged == {("dev-e-2", Decimal("20.0"))}
    assert summary.to_dict()["mismatches"][0]["differencePct"] == 20.0


async def test_unknown_model_is_cost_unknown_not_zero(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter
) -> None:
    ctx = cost_context()
    await record_usage(
        TODAY,
        "dev-e-1",
        "claude-mystery-9",
        inputTokens=5000,
        outputTokens=10,
        repo="acme/app",
        issueNumber=1,
    )
    await record_usage(
        TODAY,
        "dev-e-2",
        "claude-mystery-9",
        inputTokens=5000,
        outputTokens=10,
        costUsd=0.25,
        repo="acme/app",
        issueNumber=2,
    )

    summary = await CostService(ctx).summary(7)

    rows = {r.agent_id: r.spend for r in summary.by_agent_model}
    assert rows["dev-e-1"].computed_usd is None
    assert rows["dev-e-1"].cost_usd is None
    assert rows["dev-e-1"].to_dict()["costUsd"] is None
    # With a reported figure, that is the best we have; the model is still named as unpriced.
    assert rows["dev-e-2"].cost_usd == Decimal("0.25")
    assert summary.unknown_models == ["claude-mystery-9"]
    assert summary.total.computed_usd is None
    issues = {i.stream_id: i for i in summary.top_issues}
    assert issues["acme/app#1"].computed_usd is None and issues["acme/app#1"].cost_usd is None
    assert issues["acme/app#2"].cost_usd == Decimal("0.25")
    assert summary.top_issues[0].stream_id == "acme/app#2"


async def test_past_usage_keeps_the_price_of_its_day(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter
) -> None:
    table = Pricing(
        PriceFile.model_validate(
            {
                "models": [
                    {
                        "model": "m",
                        "prices": [
                            {
                                "effective": "2026-01-01",
                                "input": "2",
                                "output": "0",
                                "cache_write_5m": "0",
                                "cache_write_1h": "0",
                                "cache_read": "0",
                            },
                            {
                                "effective": "2026-03-10",
                                "input": "1",
                                "output": "0",
                                "cache_write_5m": "0",
                                "cache_write_1h": "0",
                                "cache_read": "0",
                            },
                        ],
                    }
                ]
            }
        )
    )
    ctx = cost_context()
    for day in (YESTERDAY, TODAY):
        await record_usage(day, "dev-e-1", "m", inputTokens=10**6, repo="a/b", issueNumber=1)
    service = CostService(ctx, pricing=table)

    summary = await service.summary(2)
    assert summary.price_sources == [FILE_SOURCE]
    assert summary.total.cost_usd == 3  # $2 yesterday, $1 today
    assert summary.today_usd == 1
    assert summary.top_issues[0].computed_usd == 3  # the same rule inside the issue query
    issue = await service.issue("a/b", 1)
    assert issue.total.cost_usd == 3
    series = await service.daily(2)
    assert series.usd["dev-e-1"] == [2, 1]


async def test_daily_series_has_every_day(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter
) -> None:
    ctx = cost_context()
    await record_usage(TODAY - timedelta(days=3), "dev-e-1", "claude-haiku-4-5", inputTokens=10**6)
    await record_usage(TODAY, "dev-e-2", "claude-haiku-4-5", inputTokens=2 * 10**6)
    series = await CostService(ctx).daily(5)
    assert series.days == [TODAY - timedelta(days=i) for i in range(4, -1, -1)]
    assert series.agents == ["dev-e-2", "dev-e-1"]
    assert series.usd["dev-e-1"] == [0, 1, 0, 0, 0]
    assert series.usd["dev-e-2"] == [0, 0, 0, 0, 2]
    assert series.to_dict()["agents"][0] == {"agentId": "dev-e-2", "usd": [0, 0, 0, 0, 2.0]}


async def test_issue_cost_by_agent(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter
) -> None:
    ctx = cost_context()
    await record_usage(
        YESTERDAY,
        "dev-e-1",
        "claude-sonnet-4-5",
        inputTokens=10**6,
        outputTokens=10**5,
        costUsd=4.5,
        repo="acme/app",
        issueNumber=7,
    )
    await record_usage(
        TODAY, "review-e-1", "claude-haiku-4-5", inputTokens=10**6, repo="acme/app", issueNumber=7
    )
    await record_usage(
        TODAY, "dev-e-1", "claude-haiku-4-5", inputTokens=10**6, repo="acme/app", issueNumber=8
    )

    cost = await CostService(ctx).issue("acme/app", 7)

    assert cost.stream_id == "acme/app#7"
    assert [(a, s.cost_usd) for a, s in cost.by_agent] == [
        ("dev-e-1", Decimal("4.5")),
        ("review-e-1", Decimal(1)),
    ]
    assert cost.total.cost_usd == Decimal("5.5")
    assert cost.to_dict()["byAgent"][0]["reportedUsd"] == 4.5
    empty = await CostService(ctx).issue("acme/app", 99)
    assert empty.by_agent == [] and empty.total.cost_usd == 0  # nothing spent is $0


async def test_the_projection_keeps_its_existing_readers_right(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter, projections: Projections
) -> None:
    """usage_by_issue is kept per day; the per-issue reader still sums an issue over its days."""
    cost_context()
    for day in (YESTERDAY, TODAY):
        await record_usage(
            day,
            "dev-e-1",
            "claude-haiku-4-5",
            inputTokens=100,
            outputTokens=1,
            costUsd=0.5,
            repo="acme/app",
            issueNumber=7,
        )
    rows = await projections.issue_usage("acme/app#7")
    assert [(r.agent_id, r.events, r.input_tokens, r.cost_usd) for r in rows] == [
        ("dev-e-1", 2, 200, Decimal("1.0"))
    ]


async def test_a_window_out_of_range_is_refused(cost_context: Callable[..., AppContext]) -> None:
    with pytest.raises(InvalidInput, match="between 1 and 366"):
        await CostService(cost_context()).summary(0)
    with pytest.raises(InvalidInput):
        await CostService(cost_context()).issue("not a repo", 1)


async def test_rebuilt_projections_equal_the_live_ones(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter, pool
) -> None:
    from store.projections import projection_snapshot, rebuild_projections

    cost_context()
    await record_usage(
        YESTERDAY,
        "dev-e-1",
        "claude-haiku-4-5",
        inputTokens=5,
        costUsd=0.1,
        cacheCreationTokens=10,
        cacheCreation1hTokens=4,
        repo="a/b",
        issueNumber=1,
    )
    await record_usage(
        TODAY,
        "dev-e-1",
        "claude-haiku-4-5",
        inputTokens=5,
        cacheCreationTokens=3,
        cacheCreation1hTokens=7,  # more than written in all: counted as at most 3
        repo="a/b",
        issueNumber=1,
    )
    async with pool.acquire() as conn:
        before = await projection_snapshot(conn)
        await rebuild_projections(conn)
        after = await projection_snapshot(conn)
    assert before == after
    assert len(before["usage_by_issue"]) == 2
