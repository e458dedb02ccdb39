"""POST /api/events and the reads: the agents' contract, bad input, tokens."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient

from store.events import EventStore

# The exact bodies the agent runtime sends today.
HEARTBEAT = (
    '{"type":"HEARTBEAT","agentId":"dev-e-1","status":"working","currentIssue":12,'
    '"currentRepo":"acme/app","activeProvider":null,"availableProviders":[],"providers":[],'
    '"integrations":[]}'
)
TOKEN_USAGE = (
    '{"type":"TOKEN_USAGE","agentId":"dev-e-1","repo":"acme/app","issueNumber":12,'
    '"model":"claude-haiku-4-5","inputTokens":1200,"outputTokens":300,"costUsd":0.0027}'
)
TOKEN = "dev-e-1-token-0123456789"


async def post(api: TestClient, body: str | bytes, **headers: str):
    return await api.post(
        "/api/events", data=body, headers={"Content-Type": "application/json", **headers}
    )


async def test_the_agents_heartbeat_and_usage_are_accepted_and_visible(api: TestClient) -> None:
    response = await post(api, HEARTBEAT)
    assert response.status == 200
    body = await response.json()
    assert body["streamId"] == "dev-e-1"
    assert body["type"] == "HEARTBEAT"
    assert body["position"] == 1
    assert "timestamp" in body

    response = await post(api, TOKEN_USAGE)
    assert response.status == 200

    agents = (await (await api.get("/api/agents")).json())["agents"]
    assert [a["agentId"] for a in agents] == ["dev-e-1"]
    assert agents[0]["status"] == "working"
    assert agents[0]["currentIssue"] == "acme/app#12"
    assert agents[0]["stale"] is False
    assert agents[0]["details"]["availableProviders"] == []

    usage = (await (await api.get("/api/usage")).json())["usage"]
    assert usage == [
        {
            "agentId": "dev-e-1",
            "repo": "acme/app",
            "model": "claude-haiku-4-5",
            "events": 1,
            "inputTokens": 1200,
            "outputTokens": 300,
            "cacheReadTokens": 0,
            "cacheCreationTokens": 0,
            "costUsd": 0.0027,
        }
    ]
    # The same figures as /cost summary and /cost issue: ours from the price table beside
    # the agent's own (Haiku 4.5: 1,200 in at $1/M + 300 out at $5/M = $0.0027).
    summary = await (await api.get("/api/costs/summary?days=1")).json()
    (agent,) = summary["byAgent"]
    assert agent["agentId"] == "dev-e-1"
    assert agent["computedUsd"] == agent["reportedUsd"] == 0.0027
    assert agent["mismatch"] is False
    daily = await (await api.get("/api/costs/daily?days=1")).json()
    assert daily["agents"] == [{"agentId": "dev-e-1", "usd": [0.0027]}]
    issue = await (await api.get("/api/costs/issue?repo=acme/app&issueNumber=12")).json()
    assert issue["streamId"] == "acme/app#12"
    assert issue["total"]["costUsd"] == 0.0027


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ("{not json", 400, "not valid JSON"),
        ("[1, 2]", 400, "JSON object"),
        ('"HEARTBEAT"', 400, "JSON object"),
        ("{}", 400, "'type' is required"),
        ('{"type": "NOT_A_TYPE"}', 400, "unknown event type 'NOT_A_TYPE'"),
        ('{"type": 12}', 400, "'type' is required"),
        ('{"type": "HEARTBEAT", "status": "working"}', 400, "'agentId'"),
        ('{"type": "HEARTBEAT", "agentId": "dev-e-1", "status": 3}', 400, "'status'"),
        ('{"type": "HEARTBEAT", "agentId": 7, "status": "x"}', 400, "'agentId'"),
        ('{"type": "HEARTBEAT", "agentId": "no spaces", "status": "x"}', 400, "'agentId'"),
        (
            '{"type":"TOKEN_USAGE","agentId":"a","model":"m","inputTokens":"12","outputTokens":1}',
            400,
            "'inputTokens'",
        ),
        (
            '{"type":"TOKEN_USAGE","agentId":"a","model":"m","inputTokens":-1,"outputTokens":1}',
            400,
            "'inputTokens'",
        ),
        ('{"type": "ISSUE_APPROVED", "repo": "acme/app"}', 400, "'issueNumber'"),
        ('{"type": "ISSUE_APPROVED", "repo": "nope", "issueNumber": 1}', 400, "'repo'"),
        ('{"type": "ISSUE_APPROVED", "repo": "a/b", "issueNumber": true}', 400, "'issueNumber'"),
        ('{"type": "ISSUE_APPROVED", "repo": "a/b", "issueNumber": 0}', 400, "'issueNumber'"),
        (
            '{"type": "ISSUE_APPROVED", "repo": "a/b", "issueNumber": 1, "priority": "urgent"}',
            400,
            "'priority'",
        ),
        ('{"type": "SUMMARY_POSTED", "text": "hi"}', 400, "recorded by Conductor-E itself"),
    ],
)
async def test_bad_input_is_refused_and_stores_nothing(
    api: TestClient, store: EventStore, body: str, status: int, needle: str
) -> None:
    response = await post(api, body)
    assert response.status == status
    error = await response.json()
    assert error["error"] == "invalid_request"
    assert needle in error["message"]
    assert await store.head_position() == 0
    # The service still answers.
    assert (await api.get("/health")).status == 200


async def test_an_oversized_body_is_413_and_stores_nothing(
    api: TestClient, store: EventStore
) -> None:
    padding = "x" * (256 * 1024)
    body = json.dumps({"type": "HEARTBEAT", "agentId": "dev-e-1", "status": "w", "pad": padding})
    response = await post(api, body)
    assert response.status == 413
    assert (await response.json())["error"] == "payload_too_large"
    assert await store.head_position() == 0


async def test_unknown_routes_and_methods_answer_json(api: TestClient) -> None:
    missing = await api.get("/api/nothing-here")
    assert missing.status == 404
    assert (await missing.json())["error"] == "not_found"
    wrong = await api.delete("/api/events")
    assert wrong.status == 405
    assert (await wrong.json())["error"] == "method_not_allowed"


async def test_idempotency_key_header_makes_a_retry_store_nothing(
    api: TestClient, store: EventStore
) -> None:
    first = await post(api, HEARTBEAT, **{"Idempotency-Key": "beat-1"})
    again = await post(api, HEARTBEAT, **{"Idempotency-Key": "beat-1"})
    assert (await first.json())["position"] == (await again.json())["position"]
    assert (await again.json())["duplicate"] is True
    assert await store.head_position() == 1


async def test_approval_priority_comes_from_labels(api: TestClient) -> None:
    body = {"type": "ISSUE_APPROVED", "repo": "acme/app", "issueNumber": 3, "labels": ["P0"]}
    assert (await post(api, json.dumps(body))).status == 200
    issue = await (await api.get("/api/issues/acme/app/3")).json()
    assert issue["priority"] == "critical"
    assert issue["state"] == "queued"
    stream = await (await api.get("/api/events/stream", params={"id": "acme/app#3"})).json()
    assert [e["type"] for e in stream["events"]] == ["ISSUE_APPROVED"]
    assert stream["events"][0]["data"]["priority"] == "critical"


async def test_reads_validate_their_parameters(api: TestClient) -> None:
    cases = [
        ("/api/issues?state=sideways", "'state'"),
        ("/api/queue?limit=0", "'limit'"),
        ("/api/queue?limit=abc", "'limit'"),
        ("/api/usage?days=-3", "'days'"),
        ("/api/events/stream", "'id'"),
        ("/api/events?type=NOPE", "unknown event type"),
        ("/api/assignments/next", "'agentId'"),
        ("/api/assignments/next?agentId=bad%20id", "'agentId'"),
        ("/api/costs/summary?days=0", "'days'"),
        ("/api/costs/summary?agent=no%20such", "'agentId'"),
        ("/api/costs/issue?repo=acme/app", "'issueNumber'"),
        ("/api/costs/issue?repo=nope&issueNumber=1", "repo"),
    ]
    for path, needle in cases:
        response = await api.get(path)
        assert response.status == 400, path
        assert needle in (await response.json())["message"], path
    missing = await api.get("/api/events/stream", params={"id": "acme/app#404"})
    assert missing.status == 404
    assert (await api.get("/api/agents/nobody")).status == 404


async def test_with_tokens_configured_writes_need_a_valid_token(
    make_context, api_client_factory, store: EventStore
) -> None:
    context = make_context(
        {"CONDUCTOR_API_TOKENS": f"dev-e-1={TOKEN},dev-e-2=another-token-0000000"}
    )
    api = await api_client_factory(context)

    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}):
        response = await post(api, HEARTBEAT, **headers)
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"
    refused = await api.get("/api/assignments/next?agentId=dev-e-1")
    assert refused.status == 401
    assert await store.head_position() == 0

    # Another agent's token cannot speak for dev-e-1.
    other = await post(api, HEARTBEAT, Authorization="Bearer another-token-0000000")
    assert other.status == 403
    assert await store.head_position() == 0

    ok = await post(api, HEARTBEAT, Authorization=f"Bearer {TOKEN}")
    assert ok.status == 200
    (event,) = await store.read_stream("dev-e-1")
    assert event.metadata["actor"] == "dev-e-1"
    # Reads stay open.
    assert (await api.get("/api/agents")).status == 200


async def test_an_answer_orjson_cannot_write_is_written_by_json_dumps(api: TestClient) -> None:
    """Answers are encoded by orjson, which stops at 64-bit integers; jsonb keeps up to 100
    digits (store/storable.py), so such an event is still read back, whole."""
    big = 10**30 + 7
    body = json.loads(HEARTBEAT) | {"counter": big}
    assert (await post(api, json.dumps(body))).status == 200
    response = await api.get("/api/events/stream", params={"id": "dev-e-1"})
    assert response.status == 200
    assert response.content_type == "application/json" and response.charset == "utf-8"
    (event,) = json.loads(await response.text())["events"]
    assert event["data"]["counter"] == big
