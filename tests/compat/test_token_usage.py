"""TOKEN_USAGE as src/conductor.js reportTokenUsage() sends it, in each configuration.

Nothing the runtime sends is refused: a repo, issue or model it does not know arrives as "", 0
or "" and is kept, counted for the agent, and shown as unknown (repo null, model "" unpriced).
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.compat.conftest import read, send
from tests.compat.runtime import (
    CONDUCTOR_JS,
    CONDUCTOR_JS_NO_CATEGORY,
    USAGE_JS,
    stale_cost,
    token_usage,
)

SONNET = "claude-sonnet-4-6"


def _issues(summary: dict[str, Any]) -> list[str]:
    """The issues among the top issues (usage no issue claimed is the stream '')."""
    return [i["streamId"] for i in summary["topIssues"] if i["streamId"]]


def _usage(rows: list[dict[str, Any]], model: str) -> dict[str, Any]:
    (row,) = [r for r in rows if r["model"] == model]
    return row


@pytest.mark.parametrize(
    "with_category", [True, False], ids=[CONDUCTOR_JS, CONDUCTOR_JS_NO_CATEGORY]
)
async def test_an_agent_with_no_repo_and_no_model_is_counted_as_unknown(
    api: TestClient, with_category: bool
) -> None:
    """No CONDUCTOR_REPO / CONDUCTOR_ISSUE_NUMBER and a turn with no model:
    repo "", issue 0, model ""."""
    body = token_usage("dev-e-1", input_tokens=1000, output_tokens=200, with_category=with_category)
    assert (body["repo"], body["issueNumber"], body["model"], body["costUsd"]) == ("", 0, "", 0)
    answer = await send(api, "/api/events", body)
    assert answer["streamId"] == "dev-e-1"

    (row,) = (await read(api, "/api/usage?days=1"))["usage"]
    assert row == {
        "agentId": "dev-e-1",
        "repo": "",
        "model": "",
        "events": 1,
        "inputTokens": 1000,
        "outputTokens": 200,
        "cacheReadTokens": 0,
        "cacheCreationTokens": 0,
        "costUsd": 0.0,
    }
    summary = await read(api, "/api/costs/summary?days=1")
    (agent,) = summary["byAgent"]
    assert agent["agentId"] == "dev-e-1"
    assert agent["events"] == agent["unpricedEvents"] == 1
    assert agent["tokens"]["input"] == 1000
    assert "" in summary["unknownModels"]
    assert _issues(summary) == []  # no issue claimed it


@pytest.mark.parametrize("category", ["work", "idle", "chat", ""])
async def test_a_rig_agent_that_knows_its_issue(api: TestClient, category: str) -> None:
    """CONDUCTOR_REPO and CONDUCTOR_ISSUE_NUMBER set (the stream consumer sets them per task)."""
    cost = stale_cost(SONNET, 1_000_000, 100_000)  # usage.js: $4.50, what Sonnet 4.6 costs
    body = token_usage(
        "dev-e-1",
        model=SONNET,
        input_tokens=1_000_000,
        output_tokens=100_000,
        cost_usd=cost,
        env_repo="acme/app",
        env_issue="12",
        category=category,
    )
    await send(api, "/api/events", body)
    row = _usage((await read(api, "/api/usage?days=1"))["usage"], SONNET)
    assert (row["repo"], row["inputTokens"], row["costUsd"]) == ("acme/app", 1_000_000, 4.5)
    issue = await read(api, "/api/costs/issue?repo=acme/app&issueNumber=12")
    assert issue["total"]["events"] == 1
    assert issue["total"]["reportedUsd"] == 4.5
    summary = await read(api, "/api/costs/summary?days=1")
    assert _issues(summary) == ["acme/app#12"]
    stored = (await read(api, "/api/events?type=TOKEN_USAGE"))["events"][0]["data"]
    assert stored.get("category") == category  # kept as sent


async def test_a_repo_with_no_issue_and_an_unparsable_issue(api: TestClient) -> None:
    """CONDUCTOR_REPO set, CONDUCTOR_ISSUE_NUMBER unset (0) or not a number
    (parseInt → NaN → null)."""
    await send(
        api,
        "/api/events",
        token_usage("dev-e-1", model=SONNET, input_tokens=10, env_repo="acme/app"),
    )
    await send(
        api,
        "/api/events",
        token_usage("dev-e-1", model=SONNET, input_tokens=5, env_repo="acme/app", env_issue="abc"),
    )
    (row,) = (await read(api, "/api/usage?days=1"))["usage"]
    assert (row["repo"], row["events"], row["inputTokens"]) == ("acme/app", 2, 15)
    summary = await read(api, "/api/costs/summary?days=1")
    assert _issues(summary) == []
    assert summary["byAgent"][0]["tokens"]["input"] == 15


async def test_the_stale_haiku_price_is_kept_as_reported(api: TestClient) -> None:
    """usage.js prices Haiku 4.5 at Haiku 3's rates: the report is kept beside our price."""
    assert USAGE_JS.startswith("src/usage.js@")
    model = "claude-haiku-4-5-20251001"
    body = token_usage(
        "dev-e-1",
        model=model,
        input_tokens=1_000_000,
        output_tokens=0,
        cost_usd=stale_cost(model, 1_000_000, 0),
        env_repo="acme/app",
        env_issue="3",
    )
    await send(api, "/api/events", body)
    row = _usage((await read(api, "/api/usage?days=1"))["usage"], model)
    assert row["costUsd"] == 0.25


@pytest.mark.parametrize(
    ("field", "value"),
    [("inputTokens", "12"), ("repo", 5), ("model", None), ("issueNumber", "12"), ("costUsd", "0")],
)
async def test_only_wrong_json_types_are_refused(api: TestClient, field: str, value: Any) -> None:
    body = {**token_usage("dev-e-1", model=SONNET, input_tokens=1), field: value}
    answer = await send(api, "/api/events", body, status=400)
    assert answer["error"] == "invalid_request"
    assert field in answer["message"]
    assert (await read(api, "/api/usage?days=1"))["usage"] == []
