"""POST /api/webhook/github over HTTP: signatures, ping, background processing, redelivery."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from store.events import EventStore
from store.locks import APPEND_LOCK
from tests.fakes.github import delivery_headers, encode, issues_payload, ping_payload
from tests.waiting import wait_until

SECRET = b"webhook-secret-for-tests"
ENV = {"CONDUCTOR_GITHUB_WEBHOOK_SECRET": SECRET.decode(), "CONDUCTOR_MANAGED_REPOS": "acme/app"}


async def deliver(
    api: TestClient,
    event: str,
    payload: dict,
    secret: bytes | None = SECRET,
    delivery: str | None = None,
):
    body = encode(payload)
    return await api.post(
        "/api/webhook/github", data=body, headers=delivery_headers(event, body, secret, delivery)
    )


def labeled(number: int = 7) -> dict:
    return issues_payload(
        "labeled", "acme/app", number, labels=["agent-ready"], label="agent-ready"
    )


async def test_a_labeled_issue_is_queued_and_a_redelivery_changes_nothing(
    make_context, api_client_factory, store: EventStore
) -> None:
    api = await api_client_factory(make_context(ENV))
    response = await deliver(api, "issues", labeled(), delivery="d-1")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "processed"
    assert body["appended"] == [{"streamId": "acme/app#7", "type": "ISSUE_APPROVED"}]
    queue = await (await api.get("/api/queue")).json()
    assert [i["streamId"] for i in queue["queue"]] == ["acme/app#7"]

    again = await deliver(api, "issues", labeled(), delivery="d-1")
    assert again.status == 200
    assert (await again.json())["appended"] == []
    assert len(await store.read_stream("acme/app#7")) == 1


async def test_unsigned_or_wrongly_signed_deliveries_are_refused(
    make_context, api_client_factory, store: EventStore
) -> None:
    api = await api_client_factory(make_context(ENV))
    unsigned = await deliver(api, "issues", labeled(), secret=None)
    assert unsigned.status == 401
    wrong = await deliver(api, "issues", labeled(), secret=b"not-the-secret")
    assert wrong.status == 401
    assert (await wrong.json())["error"] == "unauthorized"
    # A body changed after signing fails too.
    body = encode(labeled())
    headers = delivery_headers("issues", body, SECRET)
    tampered = await api.post("/api/webhook/github", data=body.replace(b"7", b"8"), headers=headers)
    assert tampered.status == 401
    assert await store.head_position() == 0


async def test_without_a_secret_every_delivery_is_refused(
    make_context, api_client_factory, store: EventStore
) -> None:
    api = await api_client_factory(make_context({"CONDUCTOR_MANAGED_REPOS": "acme/app"}))
    response = await deliver(api, "issues", labeled())
    assert response.status == 403
    assert "CONDUCTOR_GITHUB_WEBHOOK_SECRET" in (await response.json())["message"]
    assert await store.head_position() == 0


async def test_ping_is_answered(make_context, api_client_factory, store: EventStore) -> None:
    api = await api_client_factory(make_context(ENV))
    response = await deliver(api, "ping", ping_payload())
    assert response.status == 200
    assert (await response.json())["status"] == "pong"
    assert await store.head_position() == 0


async def test_malformed_deliveries_get_a_clear_400(
    make_context, api_client_factory, store: EventStore
) -> None:
    api = await api_client_factory(make_context(ENV))
    body = b"{not json"
    response = await api.post(
        "/api/webhook/github", data=body, headers=delivery_headers("issues", body, SECRET)
    )
    assert response.status == 400
    headers = delivery_headers("issues", b"{}", SECRET)
    del headers["X-GitHub-Event"]
    missing = await api.post("/api/webhook/github", data=b"{}", headers=headers)
    assert missing.status == 400
    assert await store.head_position() == 0


async def test_slow_processing_is_acknowledged_then_finished_in_the_background(
    make_context, api_client_factory, store: EventStore, database_url: str
) -> None:
    import time

    import asyncpg

    api = await api_client_factory(make_context(ENV))
    blocker = await asyncpg.connect(database_url)
    try:
        # Hold the append lock so the delivery's append has to wait.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        started = time.monotonic()
        response = await deliver(api, "issues", labeled(9), delivery="slow-1")
        assert response.status == 202
        assert time.monotonic() - started < 1.0
        assert (await response.json())["status"] == "accepted"
        await transaction.rollback()
    finally:
        await blocker.close()

    await wait_until(
        lambda: store.read_stream("acme/app#9"), timeout=10, what="the delivery's events"
    )
