"""HEARTBEAT as src/heartbeat.js sends it, in each status it can hold."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.compat.conftest import read, send
from tests.compat.runtime import HEARTBEAT_JS, HEARTBEAT_JS_PLAIN_ID, heartbeat, snapshot


@pytest.mark.parametrize(
    ("agent_id", "source"),
    [("dev-e-node/x7k2q", HEARTBEAT_JS), ("dev-e-node", HEARTBEAT_JS_PLAIN_ID)],
)
async def test_each_status_shows_in_the_agents_list(
    api: TestClient, agent_id: str, source: str
) -> None:
    """heartbeat.js: 'idle' at start, then setStatus(status, issue, repo) for work."""
    assert source.startswith("src/heartbeat.js@")
    await send(api, "/api/events", heartbeat(agent_id))
    (agent,) = (await read(api, "/api/agents"))["agents"]
    assert (agent["agentId"], agent["status"], agent["currentIssue"]) == (agent_id, "idle", None)

    for status, issue, repo, shown in [
        ("working", 12, "acme/app", "acme/app#12"),
        ("reviewing", 31, "acme/app", "acme/app#31"),
        ("error", None, None, None),
        ("idle", None, None, None),
    ]:
        answer = await send(api, "/api/events", heartbeat(agent_id, status, issue, repo))
        assert answer["streamId"] == agent_id
        agent = await read(api, f"/api/agents/{agent_id}")
        assert (agent["status"], agent["currentIssue"], agent["stale"]) == (status, shown, False)


async def test_the_provider_snapshot_is_kept(api: TestClient) -> None:
    """agent-heartbeat.js buildHeartbeatSnapshot(): providers and integrations, details null."""
    await send(
        api, "/api/events", heartbeat("dev-e-1", "working", 5, "acme/app", snapshot=snapshot())
    )
    agent = await read(api, "/api/agents/dev-e-1")
    assert agent["details"]["activeProvider"] == "claude-cli"
    assert agent["details"]["providers"][1]["status"] == "missing_auth"
    assert agent["details"]["integrations"][2] == {
        "name": "mcp:github",
        "status": "unknown",
        "details": None,
    }


async def test_a_status_with_no_issue_it_can_name(api: TestClient) -> None:
    """setStatus(status) leaves issue and repo null; a caller with neither may pass ''/0."""
    await send(api, "/api/events", heartbeat("dev-e-1", "working", 0, ""))
    agent = await read(api, "/api/agents/dev-e-1")
    assert (agent["status"], agent["currentIssue"]) == ("working", None)
