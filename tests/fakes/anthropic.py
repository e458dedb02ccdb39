"""A fake Anthropic API on 127.0.0.1 for the real `anthropic` SDK (and our Admin API client).

It serves, in the documented shapes:

* `POST /v1/messages` — `{id, type: "message", role: "assistant", content: [{type: "text",
  text}], model, stop_reason, stop_sequence, usage: {input_tokens, output_tokens,
  cache_creation_input_tokens, cache_read_input_tokens, cache_creation: {...}}}`. The reply
  text and usage are set by the test (`reply`, `next_usage`), or derived from the prompt.
  Requests need a key (`x-api-key`, or `Authorization: Bearer` as SDK 2.x sends it) and
  `anthropic-version` (401 / 400 otherwise, Anthropic's error body). `fail(status, times)`
  answers errors (500 api_error, 529 overloaded_error, 429 ...);
  `hang(times)` holds requests until the client gives up or the fake stops. Every request is
  in `requests`; `calls` counts the Messages calls.
* `GET /v1/models` — one model in the list shape (`{data, has_more, first_id, last_id}`), as
  deep health asks it; needs a key.
* `GET /v1/organizations/api_keys` — `{data, has_more, first_id, last_id}`, `after_id`/`limit`.
* `GET /v1/organizations/usage_report/messages` — 1d buckets, `group_by[]` of api_key_id and
  model, `page`/`next_page` paging over `limit` buckets; the usage is what the test put in
  `usage` plus what Messages calls made with a registered key used (`register_key`).
  Admin endpoints need `admin_key`; `fail_admin(status, times)` breaks them.

Start with `async with FakeAnthropic() as fake:`; point the SDK at `fake.url`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes import serve

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
    }


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeKey:
    id: str
    name: str
    secret: str | None = None
    status: str = "active"
    workspace_id: str | None = "wrkspc_fake"
    created_at: str = "2025-01-01T00:00:00Z"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "api_key",
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "workspace_id": self.workspace_id,
            "created_at": self.created_at,
            "created_by": {"id": "user_fake", "type": "user"},
            "partial_key_hint": "sk-ant-api03-...AAAA",
        }


@dataclass
class UsageRecord:
    """Usage the fake reports for one day, key and model."""

    day: date
    api_key_id: str | None
    model: str
    uncached_input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_5m_tokens: int = 0
    cache_creation_1h_tokens: int = 0


@dataclass
class _Failure:
    status: int
    times: int
    message: str


@dataclass
class FakeAnthropic:
    admin_key: str = "sk-ant-admin01-fake-admin-key"
    model_override: str | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    keys: list[FakeKey] = field(default_factory=list)
    usage: list[UsageRecord] = field(default_factory=list)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        self.calls = 0
        self.reply: str | Callable[[dict[str, Any]], str] = "ok"
        self._next_usage: list[dict[str, int]] = []
        self._failures: list[_Failure] = []
        self._admin_failures: list[_Failure] = []
        self._hangs = 0
        self._released = asyncio.Event()
        self._hanging = 0
        self.hanging_changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- control ----------------------------------------------------------------------------
    def next_usage(self, **usage: int) -> None:
        """The usage of the next Messages reply (input_tokens, output_tokens,
        cache_read_input_tokens, cache_creation_5m / cache_creation_1h)."""
        self._next_usage.append(usage)

    def fail(self, status: int = 500, times: int = 1, message: str = "fake failure") -> None:
        """The next `times` Messages requests answer `status` with Anthropic's error body."""
        self._failures.append(_Failure(status, times, message))

    def fail_admin(self, status: int = 500, times: int = 1, message: str = "fake failure") -> None:
        self._admin_failures.append(_Failure(status, times, message))

    def hang(self, times: int = 1) -> None:
        """The next `times` Messages requests never answer (until `release()` or stop)."""
        self._hangs += times

    def release(self) -> None:
        self._released.set()

    async def wait_hanging(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` requests are being held."""
        async with asyncio.timeout(timeout), self.hanging_changed:
            await self.hanging_changed.wait_for(lambda: self._hanging >= count)

    def register_key(
        self,
        name: str,
        *,
        secret: str | None = None,
        key_id: str | None = None,
        status: str = "active",
    ) -> FakeKey:
        key = FakeKey(
            id=key_id or f"apikey_{len(self.keys) + 1:04d}{name}",
            name=name,
            secret=secret,
            status=status,
        )
        self.keys.append(key)
        return key

    def messages_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/messages"]

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self, port: int = 0) -> FakeAnthropic:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/organizations/api_keys", self._api_keys)
        app.router.add_get("/v1/organizations/usage_report/messages", self._usage_report)
        self._runner, port = await serve(app, port)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAnthropic:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- helpers ----------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        # Keep how the request authenticated but never the key itself.
        headers = {
            k.lower(): v
            for k, v in request.headers.items()
            if k.lower() not in ("x-api-key", "authorization")
        }
        headers["x-api-key-present"] = str("x-api-key" in request.headers).lower()
        headers["authorization-present"] = str("authorization" in request.headers).lower()
        recorded = RecordedRequest(
            request.method, request.path, list(request.query.items()), headers, body
        )
        self.requests.append(recorded)
        return recorded

    @staticmethod
    def _json(status: int, body: Any) -> web.Response:
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    @staticmethod
    def _take(failures: list[_Failure]) -> _Failure | None:
        if not failures:
            return None
        failure = failures[0]
        failure.times -= 1
        if failure.times <= 0:
            failures.pop(0)
        return failure

    # --- the Models API (what deep health asks) ----------------------------------------------
    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not _credential(request):
            return self._json(401, error_body(401, "x-api-key header is required"))
        model = {
            "type": "model",
            "id": "claude-haiku-4-5",
            "display_name": "Claude Haiku 4.5",
            "created_at": "2025-10-01T00:00:00Z",
        }
        body = {"data": [model], "has_more": False, "first_id": model["id"], "last_id": model["id"]}
        return self._json(200, body)

    # --- the Messages API -------------------------------------------------------------------
    async def _messages(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        self.calls += 1
        secret = _credential(request)
        if not secret:
            return self._json(401, error_body(401, "x-api-key header is required"))
        if "anthropic-version" not in request.headers:
            return self._json(400, error_body(400, "anthropic-version header is required"))
        if self._hangs > 0:
            self._hangs -= 1
            async with self.hanging_changed:
                self._hanging += 1
                self.hanging_changed.notify_all()
            try:
                await self._released.wait()
            finally:
                self._hanging -= 1
            return self._json(500, error_body(500, "released"))
        failure = self._take(self._failures)
        if failure is not None:
            return self._json(failure.status, error_body(failure.status, failure.message))
        body = recorded.body
        if not isinstance(body, dict) or not body.get("model") or not body.get("messages"):
            return self._json(400, error_body(400, "model and messages are required"))
        if not isinstance(body.get("max_tokens"), int):
            return self._json(400, error_body(400, "max_tokens: Field required"))
        text = self.reply(body) if callable(self.reply) else self.reply
        if self._next_usage:
            usage = self._next_usage.pop(0)
        else:
            prompt = json.dumps(body.get("messages")) + json.dumps(body.get("system", ""))
            usage = {
                "input_tokens": max(1, len(prompt) // 4),
                "output_tokens": max(1, len(text) // 4),
            }
        write_5m = usage.get("cache_creation_5m", 0)
        write_1h = usage.get("cache_creation_1h", 0)
        model = self.model_override or body["model"]
        key = next((k for k in self.keys if k.secret and k.secret == secret), None)
        if key is not None:
            self.usage.append(
                UsageRecord(
                    day=self.clock().astimezone(UTC).date(),
                    api_key_id=key.id,
                    model=model,
                    uncached_input_tokens=usage.get("input_tokens", 0),
                    output_tokens=usage.get("output_tokens", 0),
                    cache_read_input_tokens=usage.get("cache_read_input_tokens", 0),
                    cache_creation_5m_tokens=write_5m,
                    cache_creation_1h_tokens=write_1h,
                )
            )
        return self._json(
            200,
            {
                "id": f"msg_fake{next(self._ids):08d}",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "model": model,
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": usage.get("input_tokens", 0),
                    "output_tokens": usage.get("output_tokens", 0),
                    "cache_read_input_tokens": usage.get("cache_read_input_tokens", 0),
                    "cache_creation_input_tokens": write_5m + write_1h,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": write_5m,
                        "ephemeral_1h_input_tokens": write_1h,
                    },
                    "service_tier": "standard",
                },
            },
        )

    # --- the Admin API ----------------------------------------------------------------------
    def _admin_refusal(self, request: web.Request) -> web.Response | None:
        if request.headers.get("x-api-key") != self.admin_key:
            return self._json(401, error_body(401, "invalid x-api-key"))
        if request.headers.get("anthropic-version") is None:
            return self._json(400, error_body(400, "anthropic-version header is required"))
        failure = self._take(self._admin_failures)
        if failure is not None:
            return self._json(failure.status, error_body(failure.status, failure.message))
        return None

    async def _api_keys(self, request: web.Request) -> web.Response:
        await self._record(request)
        refusal = self._admin_refusal(request)
        if refusal is not None:
            return refusal
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return self._json(400, error_body(400, "limit: must be an integer"))
        if not 1 <= limit <= 1000:
            return self._json(400, error_body(400, "limit: must be between 1 and 1000"))
        keys = self.keys
        status = request.query.get("status")
        if status:
            keys = [k for k in keys if k.status == status]
        start = 0
        after = request.query.get("after_id")
        if after:
            ids = [k.id for k in keys]
            if after not in ids:
                return self._json(400, error_body(400, "after_id: unknown id"))
            start = ids.index(after) + 1
        page = keys[start : start + limit]
        return self._json(
            200,
            {
                "data": [k.to_json() for k in page],
                "has_more": start + limit < len(keys),
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            },
        )

    async def _usage_report(self, request: web.Request) -> web.Response:
        await self._record(request)
        refusal = self._admin_refusal(request)
        if refusal is not None:
            return refusal
        query = request.query
        if query.get("bucket_width", "1d") != "1d":
            return self._json(400, error_body(400, "the fake serves bucket_width=1d only"))
        try:
            starting_at = _parse_time(query["starting_at"])
            ending_at = _parse_time(query["ending_at"]) if "ending_at" in query else None
            limit = int(query.get("limit", "7"))
        except (KeyError, ValueError):
            return self._json(
                400, error_body(400, "starting_at: a valid RFC 3339 time is required")
            )
        if not 1 <= limit <= 31:
            return self._json(400, error_body(400, "limit: must be between 1 and 31 for 1d"))
        group_by = set(query.getall("group_by[]", []))
        first = starting_at.date()
        page = query.get("page")
        if page:
            try:
                first = date.fromisoformat(base64.b64decode(page[5:]).decode())
            except ValueError:
                return self._json(400, error_body(400, "page: invalid token"))
        last = (ending_at - timedelta(days=1)).date() if ending_at else self.clock().date()
        days = []
        day = first
        while day <= last and len(days) < limit:
            days.append(day)
            day += timedelta(days=1)
        data = []
        for bucket in days:
            totals: dict[tuple[str | None, str | None], dict[str, int]] = defaultdict(
                lambda: defaultdict(int)
            )
            for record in self.usage:
                if record.day != bucket:
                    continue
                group = (
                    record.api_key_id if "api_key_id" in group_by else None,
                    record.model if "model" in group_by else None,
                )
                t = totals[group]
                t["uncached_input_tokens"] += record.uncached_input_tokens
                t["output_tokens"] += record.output_tokens
                t["cache_read_input_tokens"] += record.cache_read_input_tokens
                t["5m"] += record.cache_creation_5m_tokens
                t["1h"] += record.cache_creation_1h_tokens
            start = datetime.combine(bucket, datetime.min.time(), UTC)
            data.append(
                {
                    "starting_at": start.isoformat().replace("+00:00", "Z"),
                    "ending_at": (start + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
                    "results": [
                        {
                            "api_key_id": key_id,
                            "workspace_id": None,
                            "model": model,
                            "service_tier": None,
                            "context_window": None,
                            "uncached_input_tokens": t["uncached_input_tokens"],
                            "cache_read_input_tokens": t["cache_read_input_tokens"],
                            "cache_creation": {
                                "ephemeral_5m_input_tokens": t["5m"],
                                "ephemeral_1h_input_tokens": t["1h"],
                            },
                            "output_tokens": t["output_tokens"],
                            "server_tool_use": {"web_search_requests": 0},
                        }
                        for (key_id, model), t in sorted(totals.items(), key=str)
                    ],
                }
            )
        more = day <= last
        token = "page_" + base64.b64encode(day.isoformat().encode()).decode() if more else None
        return self._json(200, {"data": data, "has_more": more, "next_page": token})


def _credential(request: web.Request) -> str | None:
    """The API key: `x-api-key`, or the bearer token newer SDKs send in `Authorization`."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment
