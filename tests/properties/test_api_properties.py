"""Property tests over the HTTP API's writes: whatever arrives, the answer is 2xx or 4xx,
never 5xx, and a refused request stores nothing.

Each test drives the real aiohttp application on a real PostgreSQL with bodies hypothesis
generates: arbitrary JSON, the known event types with fields mutated, wrong types, huge
numbers, unicode, nesting, non-object JSON and bytes that are not UTF-8.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bot.context import AppContext
from store.catalogue import CATALOGUE
from store.events import EventStore
from tests.fakes.github import delivery_headers, encode, issues_payload, sign

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TOKEN = "dev-e-1-token-0123456789"
JSON = {"Content-Type": "application/json"}
SECRET = b"webhook-secret-for-property-tests"
WEBHOOK_ENV = {
    "CONDUCTOR_GITHUB_WEBHOOK_SECRET": SECRET.decode(),
    "CONDUCTOR_MANAGED_REPOS": "acme/app",
}

# Any character, NUL included (PostgreSQL's jsonb cannot hold U+0000: it must be a 400).
CHARS = st.characters()
# JSON scalars, including the awkward ones: huge integers, floats at the edge, control
# characters and astral-plane unicode, strings that look like numbers or SQL.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(CHARS, max_size=40),
    st.sampled_from(["", " ", "0", "-1", "1e309", "acme/app", "a/b#1", "'; DROP TABLE events;--"]),
    st.text(alphabet=st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=8),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(CHARS, max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
# The fields the catalogue's schemas name, so mutations hit real validators.
KNOWN_FIELDS = sorted(
    {
        "repo",
        "issueNumber",
        "agentId",
        "prNumber",
        "status",
        "model",
        "inputTokens",
        "outputTokens",
        "costUsd",
        "priority",
        "title",
        "labels",
        "url",
        "currentIssue",
        "currentRepo",
        "reason",
        "branch",
        "cacheReadTokens",
        "environment",
        "details",
    }
)
EVENT_TYPES = sorted(CATALOGUE)


@st.composite
def event_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A known event type with a mix of plausible and junk values for its fields."""
    body: dict[str, Any] = {"type": draw(st.sampled_from(EVENT_TYPES))}
    plausible = {
        "repo": "acme/app",
        "issueNumber": 12,
        "agentId": "dev-e-1",
        "prNumber": 3,
        "status": "working",
        "model": "claude-haiku-4-5",
        "inputTokens": 10,
        "outputTokens": 5,
        "costUsd": 0.01,
    }
    for name in draw(st.lists(st.sampled_from(KNOWN_FIELDS), max_size=8, unique=True)):
        body[name] = draw(st.one_of(st.just(plausible.get(name, "x")), JSON_VALUES))
    body.update(draw(st.dictionaries(st.text(CHARS, max_size=10), JSON_VALUES, max_size=3)))
    return body


def raw(value: Any) -> bytes:
    """UTF-8 JSON; text with lone surrogates (which UTF-8 cannot carry) is sent as the
    `\\udXXX` escapes a client could still send."""
    try:
        return json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(value).encode()


BODIES = st.one_of(
    event_bodies().map(raw),
    st.dictionaries(st.text(CHARS, max_size=12), JSON_VALUES, max_size=6).map(raw),
    JSON_VALUES.map(raw),  # non-object JSON included
    st.binary(max_size=200),  # mostly invalid UTF-8 / not JSON at all
    event_bodies().map(lambda b: raw(b)[:-1] + b"\xff\xfe}"),  # JSON with invalid UTF-8 inside
)


@pytest.mark.parametrize(
    "body",
    [
        r'{"type":"HEARTBEAT","agentId":"dev-e-1","status":"wo\u0000rk"}',
        r'{"type":"HEARTBEAT","agentId":"dev-e-1","status":"idle","note\u0000":1}',
        r'{"type":"ISSUE_APPROVED","repo":"acme/app","issueNumber":1,"title":"\u0000"}',
    ],
)
async def test_a_nul_character_is_refused_with_a_400(
    api: TestClient, store: EventStore, body: str
) -> None:
    response = await api.post("/api/events", data=body, headers=JSON)
    assert response.status == 400, await response.text()
    assert await store.head_position() == 0


@pytest.fixture
async def token_api(
    make_context: Callable[..., AppContext],
    api_client_factory: Callable[[AppContext], Awaitable[TestClient]],
) -> TestClient:
    """The API with one agent token configured: writes need it."""
    return await api_client_factory(make_context({"CONDUCTOR_API_TOKENS": f"dev-e-1={TOKEN}"}))


@pytest.fixture
async def webhook_api(
    make_context: Callable[..., AppContext],
    api_client_factory: Callable[[AppContext], Awaitable[TestClient]],
) -> TestClient:
    """The API with a webhook secret configured."""
    return await api_client_factory(make_context(WEBHOOK_ENV))


@FUZZ
@given(body=BODIES, content_type=st.sampled_from(["application/json", "text/plain", ""]))
async def test_any_event_body_is_answered_without_a_server_error(
    api: TestClient, store: EventStore, body: bytes, content_type: str
) -> None:
    before = await store.head_position()
    headers = {"Content-Type": content_type} if content_type else {}
    response = await api.post("/api/events", data=body, headers=headers)
    text = await response.text()
    assert response.status < 500, (body, response.status, text)
    assert 200 <= response.status < 300 or 400 <= response.status < 500
    after = await store.head_position()
    if response.status >= 400:
        assert after == before, (body, text)
        error = json.loads(text)
        assert set(error) >= {"error", "message"}, text
        assert "Traceback" not in text
    else:
        assert after >= before


@FUZZ
@given(body=event_bodies())
async def test_mutated_known_events_never_fail_the_server(
    api: TestClient, store: EventStore, body: dict[str, Any]
) -> None:
    """Known types only, so most examples reach the schema validation and the append."""
    before = await store.head_position()
    response = await api.post("/api/events", data=raw(body), headers=JSON)
    text = await response.text()
    assert response.status in (200, 400, 409, 422), (body, response.status, text)
    if response.status != 200:
        assert await store.head_position() == before, (body, text)


@FUZZ
@given(
    body=BODIES,
    authorization=st.one_of(
        st.none(),
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
        st.just(f"Bearer {TOKEN[:-1]}"),
        st.just(f"Basic {TOKEN}"),
    ),
)
async def test_with_tokens_an_unauthenticated_write_is_refused_and_stores_nothing(
    token_api: TestClient, store: EventStore, body: bytes, authorization: str | None
) -> None:
    headers = JSON if authorization is None else {**JSON, "Authorization": authorization}
    response = await token_api.post("/api/events", data=body, headers=headers)
    text = await response.text()
    assert 400 <= response.status < 500, (body, authorization, response.status, text)
    assert TOKEN not in text
    assert await store.head_position() == 0


HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
WEBHOOK_EVENTS = st.sampled_from(
    [
        "issues",
        "pull_request",
        "pull_request_review",
        "check_suite",
        "check_run",
        "ping",
        "push",
        "",
        "ISSUES",
    ]
)
WEBHOOK_BODIES = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(raw),
    st.dictionaries(
        st.sampled_from(["action", "issue", "repository", "label", "pull_request", "sender"]),
        JSON_VALUES,
        max_size=5,
    ).map(raw),
    st.sampled_from(["opened", "labeled", "unlabeled", "closed", "reopened", "edited"]).map(
        lambda action: encode(
            issues_payload(action, "acme/app", 7, labels=["agent-ready"], label="agent-ready")
        )
    ),
)


def headers_for(event: str, body: bytes, secret: bytes | None) -> dict[str, str]:
    headers = delivery_headers(event or "issues", body, secret)
    if not event:
        del headers["X-GitHub-Event"]
    return headers


@FUZZ
@given(
    event=WEBHOOK_EVENTS,
    body=WEBHOOK_BODIES,
    signature=st.one_of(
        st.none(),
        HEADER_TEXT,
        st.binary(min_size=1, max_size=32).map(lambda key: sign(key, b"x")),
        st.just("sha256="),
        st.just("sha1=0123"),
    ),
)
async def test_unsigned_or_wrongly_signed_deliveries_are_401_and_store_nothing(
    webhook_api: TestClient,
    store: EventStore,
    event: str,
    body: bytes,
    signature: str | None,
) -> None:
    headers = headers_for(event, body, None)
    if signature is not None:
        assume(signature != sign(SECRET, body))
        headers["X-Hub-Signature-256"] = signature
    response = await webhook_api.post("/api/webhook/github", data=body, headers=headers)
    text = await response.text()
    assert response.status == 401, (event, body, signature, response.status, text)
    assert SECRET.decode() not in text
    assert await store.head_position() == 0


# A signed delivery is trusted to come from GitHub, yet a payload of the wrong shape must be
# a 400, not a 500; the explicit examples are the shapes that once failed.
@FUZZ
@example(event="issues", body=b'{"repository":true}', extra={})
@example(event="pull_request", body=b'{"action":"opened","pull_request":1}', extra={})
@example(event="pull_request", body=b'{"action":"opened","pull_request":{"number":":"}}', extra={})
@given(
    event=WEBHOOK_EVENTS,
    body=WEBHOOK_BODIES,
    extra=st.dictionaries(
        st.sampled_from(["X-GitHub-Delivery", "Content-Type", "X-GitHub-Hook-ID"]),
        HEADER_TEXT,
        max_size=2,
    ),
)
async def test_signed_deliveries_of_any_shape_never_fail_the_server(
    webhook_api: TestClient,
    store: EventStore,
    event: str,
    body: bytes,
    extra: dict[str, str],
) -> None:
    before = await store.head_position()
    headers = {**headers_for(event, body, SECRET), **extra}
    response = await webhook_api.post("/api/webhook/github", data=body, headers=headers)
    text = await response.text()
    assert response.status < 500, (event, body, extra, response.status, text)
    if response.status >= 400:
        assert await store.head_position() == before, (event, body, text)
