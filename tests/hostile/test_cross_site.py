"""With no tokens configured (the default), a web page on the same network could post events
(`text/plain` from a foreign Origin) and claim work (`GET /api/assignments/next`). Writes now
need application/json and refuse a foreign Origin; claims refuse what looks like a browser.

The agent runtime keeps working unchanged: every request it sends (Stig-Johnny/automate-e,
src/heartbeat.js, src/conductor.js, src/stream-consumer.js; usage.js only counts) is a Node
`fetch` with `Content-Type: application/json` and no Origin; its claim is a plain GET from
curl or fetch (`Accept: */*`, no Origin).
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from store.events import EventStore
from tests.hostile.conftest import HEARTBEAT, JSON

APPROVE = {"type": "ISSUE_APPROVED", "repo": "acme/app", "issueNumber": 1}
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({}, 415),
        ({**JSON, "Origin": "http://evil.example"}, 403),
        ({**JSON, "Origin": "null"}, 403),
        ({**JSON, "Sec-Fetch-Site": "cross-site"}, 403),
    ],
)
async def test_cross_site_writes_are_refused(
    api: TestClient, store: EventStore, headers: dict[str, str], status: int
) -> None:
    response = await api.post("/api/events", data=HEARTBEAT, headers=headers)
    assert response.status == status, await response.text()
    assert "error" in await response.json()
    assert await store.head_position() == 0


async def test_the_agent_runtime_and_same_origin_writes_are_accepted(api: TestClient) -> None:
    # Exactly the runtime's fetch: Content-Type: application/json, no Origin.
    assert (await api.post("/api/events", data=HEARTBEAT, headers=JSON)).status == 200
    charset = {"Content-Type": "application/json; charset=utf-8"}
    assert (await api.post("/api/events", data=HEARTBEAT, headers=charset)).status == 200
    own = f"http://{api.server.host}:{api.server.port}"
    assert (
        await api.post("/api/events", data=HEARTBEAT, headers={**JSON, "Origin": own})
    ).status == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
        {"Accept": "image/avif,image/webp,image/png"},
        {"Accept": "text/html"},
        {"User-Agent": CHROME},
        {"User-Agent": CHROME, "Accept": "*/*"},
        # Without CONDUCTOR_API_TOKENS nobody checks the header: it proves nothing.
        {"User-Agent": CHROME, "Authorization": "Bearer whatever"},
    ],
)
async def test_a_claim_from_a_web_page_is_refused(
    api: TestClient, store: EventStore, headers: dict[str, str]
) -> None:
    await api.post("/api/events", json=APPROVE)
    response = await api.get("/api/assignments/next?agentId=dev-e-1", headers=headers)
    assert response.status == 403, await response.text()
    assert (await api.get("/api/queue")).status == 200
    queue = (await (await api.get("/api/queue")).json())["queue"]
    assert [i["issueNumber"] for i in queue] == [1]  # still queued: nothing claimed


@pytest.mark.parametrize(
    "headers",
    [
        {},  # aiohttp's own defaults
        {"User-Agent": "curl/8.5.0", "Accept": "*/*"},
        {"User-Agent": "node", "Accept": "*/*", "Sec-Fetch-Mode": "cors"},  # Node's fetch
        {"Accept": "application/json"},
    ],
)
async def test_an_agents_claim_works(api: TestClient, headers: dict[str, str]) -> None:
    await api.post("/api/events", json=APPROVE)
    response = await api.get("/api/assignments/next?agentId=dev-e-1", headers=headers)
    assert response.status == 200, await response.text()
    assert (await response.json())["assignee"] == "dev-e-1"
