"""The Admin API (needs `admin_key` and `anthropic-version`; `fail_admin(status, times)` breaks
it):

* `GET /v1/organizations/api_keys` — `{data, has_more, first_id, last_id}`, `after_id`/`limit`
  and `status`; the keys are those a test made with `register_key`;
* `GET /v1/organizations/usage_report/messages` — 1d buckets, `group_by[]` of api_key_id and
  model, `page`/`next_page` paging over `limit` buckets; the usage is what the test put in
  `usage` plus what Messages calls made with a registered key used."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes.anthropic.server import Failure, Server, error_body


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


class Admin(Server):
    # Set by FakeAnthropic, a dataclass: its fields are what a test configures and reads.
    admin_key: str
    keys: list[FakeKey]
    usage: list[UsageRecord]
    clock: Callable[[], datetime]

    def __post_init__(self) -> None:
        super().__post_init__()
        self._admin_failures: list[Failure] = []

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/v1/organizations/api_keys", self._api_keys)
        app.router.add_get("/v1/organizations/usage_report/messages", self._usage_report)

    def fail_admin(self, status: int = 500, times: int = 1, message: str = "fake failure") -> None:
        self._admin_failures.append(Failure(status, times, message))

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


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment
