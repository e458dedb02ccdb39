"""Claims over HTTP, health, metrics."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from store.events import EventStore


async def approve(api: TestClient, number: int, **extra: object) -> None:
    body = {"type": "ISSUE_APPROVED", "repo": "acme/app", "issueNumber": number, **extra}
    response = await api.post("/api/events", json=body)
    assert response.status == 200, await response.text()


async def test_twenty_agents_race_for_five_issues(api: TestClient, store: EventStore) -> None:
    for number in range(1, 6):
        await approve(api, number, title=f"issue {number}")

    async def ask(i: int) -> tuple[int, dict | None]:
        response = await api.get(f"/api/assignments/next?agentId=dev-e-{i}")
        body = await response.json() if response.status == 200 else None
        return response.status, body

    answers = await asyncio.gather(*(ask(i) for i in range(20)))
    claimed = [body for status, body in answers if status == 200]
    assert len(claimed) == 5
    assert [status for status, _ in answers].count(204) == 15
    assert len({c["streamId"] for c in claimed}) == 5
    for issue in claimed:
        assert issue["state"] == "assigned"
        assert issue["assignee"].startswith("dev-e-")
        assert issue["title"].startswith("issue ")
    assigned = await store.read_all(0, 100, types=["ISSUE_ASSIGNED"])
    assert len(assigned) == 5


async def test_the_top_of_the_queue_goes_first(api: TestClient) -> None:
    await approve(api, 1)
    await approve(api, 2, priority="critical")
    first = await (await api.get("/api/assignments/next?agentId=dev-e-1")).json()
    assert first["issueNumber"] == 2
    queue = await (await api.get("/api/queue")).json()
    assert [i["issueNumber"] for i in queue["queue"]] == [1]


async def test_review_claims(api: TestClient) -> None:
    await approve(api, 1)
    assert (await api.get("/api/reviews/next?agentId=review-e-1")).status == 204
    pr = {"type": "PR_CREATED", "repo": "acme/app", "issueNumber": 1, "prNumber": 77}
    assert (await api.post("/api/events", json=pr)).status == 200
    response = await api.get("/api/reviews/next?agentId=review-e-1")
    assert response.status == 200
    body = await response.json()
    assert (body["prNumber"], body["reviewer"]) == (77, "review-e-1")


async def test_health_is_liveness_only(api: TestClient) -> None:
    body = await (await api.get("/health")).json()
    assert body["status"] == "healthy"
    assert "timestamp" in body


async def test_deep_health_reports_postgres_and_turns_503_without_it(
    make_context, api_client_factory
) -> None:
    context = make_context()
    api = await api_client_factory(context)
    healthy = await api.get("/healthz/deep")
    assert healthy.status == 200
    body = await healthy.json()
    (postgres,) = body["components"]
    assert (postgres["name"], postgres["status"], postgres["critical"]) == ("postgres", "up", True)
    assert postgres["latencyMs"] >= 0

    await context.pool.close()  # the database is gone for this process
    down = await api.get("/healthz/deep")
    assert down.status == 503
    body = await down.json()
    assert body["status"] == "unhealthy"
    assert body["components"][0]["status"] == "down"
    # Liveness does not depend on the database.
    assert (await api.get("/health")).status == 200
    # A store read without the database is a clean 503, not a stack trace.
    failed = await api.get("/api/queue")
    assert failed.status == 503
    assert (await failed.json())["error"] == "unavailable"


async def test_metrics_count_requests_appends_and_queue_depth(api: TestClient) -> None:
    await approve(api, 1, priority="high")
    await api.get("/api/assignments/next?agentId=dev-e-1")
    await api.get("/api/assignments/next?agentId=dev-e-2")
    response = await api.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert 'conductor_events_appended_total{type="ISSUE_APPROVED"} 1.0' in text
    assert 'conductor_claims_total{kind="issue",result="claimed"} 1.0' in text
    assert 'conductor_claims_total{kind="issue",result="empty"} 1.0' in text
    assert 'conductor_queue_depth{priority="high"} 0.0' in text
    assert 'route="/api/events",status="200"' in text
    assert "conductor_http_request_duration_seconds_bucket" in text
