"""/api/costs/* over the real API: the agents' own bodies priced by genai-prices, the agents'
reported cost beside ours, and usage the runtime could not attribute."""

from __future__ import annotations

from datetime import UTC, datetime

import genai_prices
from aiohttp.test_utils import TestClient

from bot.context import AppContext
from tests.usage import record_usage_on

# TOKEN_USAGE as the agent runtime sends it (src/usage.js prices its own costUsd: Sonnet 4.6 at
# $3/$15 — right — and Haiku 4.5 at Haiku 3's $0.25/$1.25, four times too low).
SONNET_TURN = {
    "type": "TOKEN_USAGE",
    "agentId": "dev-e-1",
    "repo": "acme/app",
    "issueNumber": 12,
    "model": "claude-sonnet-4-6",
    "inputTokens": 1_000_000,
    "outputTokens": 100_000,
    "costUsd": 4.5,
}
HAIKU_TURN = {
    **SONNET_TURN,
    "agentId": "review-e-1",
    "model": "claude-haiku-4-5-20251001",
    "inputTokens": 400_000,
    "outputTokens": 40_000,
    "costUsd": 0.15,
}


async def get(api: TestClient, path: str) -> dict:
    response = await api.get(path)
    body = await response.json()
    assert response.status == 200, body
    return dict(body)


async def test_a_sonnet_4_6_turn_costs_4_50_and_a_stale_report_shows_its_gap(
    api: TestClient,
) -> None:
    for body in (SONNET_TURN, HAIKU_TURN):
        response = await api.post("/api/events", json=body)
        assert response.status == 200, await response.json()

    summary = await get(api, "/api/costs/summary?days=1")

    pairs = {(r["agentId"], r["model"]): r for r in summary["byAgentModel"]}
    sonnet = pairs[("dev-e-1", "claude-sonnet-4-6")]
    assert sonnet["costUsd"] == sonnet["computedUsd"] == 4.5
    assert sonnet["basis"] == "priced" and sonnet["unpricedModel"] is False
    assert sonnet["differencePct"] == 0 and sonnet["mismatch"] is False
    haiku = pairs[("review-e-1", "claude-haiku-4-5-20251001")]
    assert haiku["costUsd"] == 0.6  # 400k × $1 + 40k × $5, per million
    assert haiku["reportedUsd"] == 0.15 and haiku["differencePct"] == -75.0
    assert haiku["mismatch"] is True
    assert summary["total"]["costUsd"] == 5.1
    assert summary["priceSources"] == [f"genai-prices {genai_prices.__version__}"]
    assert summary["topIssues"][0]["streamId"] == "acme/app#12"
    assert summary["topIssues"][0]["costUsd"] == 5.1

    daily = await get(api, "/api/costs/daily?days=1")
    assert {a["agentId"]: a["usd"] for a in daily["agents"]} == {
        "dev-e-1": [4.5],
        "review-e-1": [0.6],
    }
    issue = await get(api, "/api/costs/issue?repo=acme/app&issueNumber=12")
    assert issue["total"]["costUsd"] == 5.1
    assert issue["priceSources"] == summary["priceSources"]


async def test_usage_naming_no_model_or_issue_is_counted_and_labelled(
    api: TestClient, context: AppContext
) -> None:
    # The runtime's body when it knows neither its repo nor its model (stored as sent).
    today = datetime.now(UTC).date()
    for cost in (0.02, None):
        fields = {"repo": "", "issueNumber": 0, "inputTokens": 700, "outputTokens": 70}
        if cost is not None:
            fields["costUsd"] = cost
        await record_usage_on(context.pool, today, "dev-e-3", "", raw=True, **fields)

    summary = await get(api, "/api/costs/summary?days=1")

    (pair,) = summary["byAgentModel"]
    assert pair["model"] == "" and pair["unpricedModel"] is True
    assert pair["events"] == 2 and pair["tokens"]["total"] == 1_540
    assert pair["costUsd"] == 0.02 and pair["basis"] == "reported"
    assert summary["unknownModels"] == [""]
    (issue,) = summary["topIssues"]
    assert issue["unattributed"] is True and issue["streamId"] == ""
    assert issue["costUsd"] == 0.02 and issue["unpricedEvents"] == 2

    unattributed = await get(api, "/api/costs/issue?unattributed=true")
    assert unattributed["unattributed"] is True
    assert unattributed["total"]["events"] == 2
    assert unattributed["total"]["costUsd"] == 0.02
