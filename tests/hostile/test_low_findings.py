"""The Low findings, each fixed (the README's "Security decisions" says what was decided)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.context import AppContext
from bot.settings import ConfigError, load_settings
from bot.web.webhooks import MAX_DELIVERY_BYTES
from store.events import EventStore
from tests.fakes.github import delivery_headers
from tests.hostile.conftest import JSON, raw_request, request_bytes

DASHBOARD_TOKEN = "dashboard-token-0123456789"


@pytest.mark.parametrize(
    "body",
    [
        {"type": "HEARTBEAT", "agentId": "dev-e-1\n", "status": "x"},
        {
            "type": "ISSUE_APPROVED",
            "repo": "acme/app",
            "issueNumber": 1,
            "url": "javascript:alert(1)",
        },
        {"type": "ISSUE_APPROVED", "repo": "acme/app", "issueNumber": 1, "url": " https://x"},
        {
            "type": "PR_CREATED",
            "repo": "acme/app",
            "issueNumber": 1,
            "prNumber": 2,
            "url": "data:x",
        },
        {"type": "ISSUE_APPROVED", "repo": "acme/..", "issueNumber": 1},
        {"type": "ISSUE_APPROVED", "repo": "../app", "issueNumber": 1},
        {"type": "ISSUE_APPROVED", "repo": "acme/.", "issueNumber": 1},
    ],
)
async def test_bad_ids_links_and_repo_names_are_refused(
    api: TestClient, store: EventStore, body: dict[str, Any]
) -> None:
    response = await api.post("/api/events", json=body)
    assert response.status == 400, await response.text()
    assert await store.head_position() == 0


async def test_good_links_and_dotted_repo_names_are_kept(api: TestClient) -> None:
    for body in (
        {"type": "ISSUE_APPROVED", "repo": "acme/.github", "issueNumber": 1},
        {"type": "ISSUE_APPROVED", "repo": "a.b/c..d", "issueNumber": 1},
        {
            "type": "ISSUE_APPROVED",
            "repo": "acme/app",
            "issueNumber": 2,
            "url": "https://github.com/acme/app/issues/2",
        },
    ):
        response = await api.post("/api/events", json=body)
        assert response.status == 200, await response.text()


async def test_the_dashboard_sends_its_security_headers(api: TestClient) -> None:
    page = await api.get("/")
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Server"] == "Conductor-E"
    data = await api.get("/dashboard/api/board")
    assert data.headers["Cache-Control"] == "no-store"
    assert data.headers["X-Content-Type-Options"] == "nosniff"
    for response in (page, data, await api.get("/health")):
        assert "python" not in response.headers["Server"].lower()
        assert "aiohttp" not in response.headers["Server"].lower()


@pytest.fixture
async def dashboard(
    make_context: Callable[..., AppContext],
    api_client_factory: Callable[[AppContext], Awaitable[TestClient]],
) -> TestClient:
    return await api_client_factory(make_context({"CONDUCTOR_DASHBOARD_TOKEN": DASHBOARD_TOKEN}))


async def test_the_login_form_is_throttled(dashboard: TestClient) -> None:
    for _ in range(5):
        wrong = await dashboard.post("/dashboard/login", data={"token": "guess"})
        assert wrong.status == 401
    throttled = await dashboard.post("/dashboard/login", data={"token": DASHBOARD_TOKEN})
    assert throttled.status == 429
    assert "Set-Cookie" not in throttled.headers


async def test_the_session_cookie_is_secure_behind_a_tls_proxy(dashboard: TestClient) -> None:
    plain = await dashboard.post(
        "/dashboard/login", data={"token": DASHBOARD_TOKEN}, allow_redirects=False
    )
    assert plain.status == 303
    assert "Secure" not in plain.headers["Set-Cookie"]
    proxied = await dashboard.post(
        "/dashboard/login",
        data={"token": DASHBOARD_TOKEN},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )
    assert "Secure" in proxied.headers["Set-Cookie"]


def test_a_short_dashboard_token_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="CONDUCTOR_DASHBOARD_TOKEN"):
        load_settings({"CONDUCTOR_DATA_DIR": "/nonexistent", "CONDUCTOR_DASHBOARD_TOKEN": "abc123"})


@pytest.mark.parametrize(
    "data",
    [
        b"GET /<script>alert(1)</script> HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
    ],
)
async def test_unparseable_requests_answer_json_without_echoing_them(
    serve: Callable[..., Awaitable[int]], make_context: Callable[..., AppContext], data: bytes
) -> None:
    port = await serve(make_context)
    answer = await raw_request(port, data)
    assert answer.status == 400
    assert answer.headers["content-type"].startswith("application/json")
    assert json.loads(answer.body)["error"] == "invalid_request"
    assert b"script" not in answer.body and b"aaaa" not in answer.body


async def test_the_webhooks_413_names_its_own_limit_and_unsigned_bodies_are_never_read(
    make_context: Callable[..., AppContext],
    api_client_factory: Callable[[AppContext], Awaitable[TestClient]],
) -> None:
    api = await api_client_factory(make_context({"CONDUCTOR_GITHUB_WEBHOOK_SECRET": "s3cret"}))
    assert api.server.port is not None
    port = api.server.port

    def announcing(size: int, **headers: str) -> bytes:
        """Headers that announce a body of `size` bytes, which is never sent."""
        head = request_bytes("POST", "/api/webhook/github", b"", {**JSON, **headers})
        return head.replace(b"Content-Length: 0", f"Content-Length: {size}".encode())

    signed = delivery_headers("issues", b"{}", b"s3cret")
    answer = await raw_request(port, announcing(MAX_DELIVERY_BYTES + 1, **signed))
    assert answer.status == 413
    assert json.loads(answer.body)["message"] == "the body exceeds 1 MiB"
    # Unsigned, and announcing 100 MiB it never sends: refused from the headers alone.
    answer = await raw_request(port, announcing(100 * 1024 * 1024))
    assert answer.status == 401
