"""A fake Discord execute-webhook endpoint on 127.0.0.1, in Discord's documented shapes.

`POST /api/webhooks/{id}/{token}` (also under `/api/v10`): the JSON body is checked against
Discord's OpenAPI schema for execute_webhook (tests/fakes/discord_openapi.py); `?wait=true`
answers 200 with a message object (in the documented response shape), otherwise 204. A wrong
token is 401 `Invalid Webhook Token` (code 50027), an unknown id 404 `Unknown Webhook` (10015),
a broken body 400 (50035).

Scripted failures: `rate_limit(retry_after)` answers 429 with `{message, retry_after, global}`
and the Retry-After header; `fail(status)` answers a 5xx. Every request is in `requests`; each
created message in `messages`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes import serve
from tests.fakes.discord_openapi import DiscordSpec

WEBHOOK_ID = "112233445566778899"
WEBHOOK_TOKEN = "fake-webhook-token-0123456789abcdefABCDEF"
CHANNEL_ID = "998877665544332211"

_SPEC: DiscordSpec | None = None


def spec() -> DiscordSpec:
    global _SPEC
    if _SPEC is None:
        _SPEC = DiscordSpec()
    return _SPEC


@dataclass
class WebhookRequest:
    path: str
    query: dict[str, str]
    body: Any
    status: int


@dataclass
class _Scripted:
    status: int
    retry_after: float = 0.0
    header_only: bool = False


@dataclass
class FakeWebhook:
    requests: list[WebhookRequest] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._script: list[_Scripted] = []
        self._ids = itertools.count(1_300_000_000_000_000_001)
        self._runner: web.AppRunner | None = None
        self.base = ""
        self._holds = 0
        self._held = 0
        self._released = asyncio.Event()
        self.held_changed = asyncio.Condition()

    @property
    def url(self) -> str:
        """The execute-webhook URL, as Discord shows it (no query)."""
        return f"{self.base}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"

    # --- control ----------------------------------------------------------------------------
    def rate_limit(self, retry_after: float = 0.5, *, header_only: bool = False) -> None:
        """The next request answers 429; `header_only` sends Retry-After without a JSON body."""
        self._script.append(_Scripted(429, retry_after, header_only))

    def fail(self, status: int = 500, times: int = 1) -> None:
        self._script.extend(_Scripted(status) for _ in range(times))

    def hold(self, times: int = 1) -> None:
        """The next `times` requests wait until `release()` before they are answered."""
        self._holds += times
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def wait_held(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until `count` requests are being held."""
        async with asyncio.timeout(timeout), self.held_changed:
            await self.held_changed.wait_for(lambda: self._held >= count)

    def contents(self) -> list[str]:
        return [m["content"] for m in self.messages]

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> FakeWebhook:
        app = web.Application()
        for prefix in ("/api", "/api/v10"):
            app.router.add_post(prefix + "/webhooks/{id}/{token}", self._execute)
        self._runner, port = await serve(app)
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeWebhook:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the endpoint -----------------------------------------------------------------------
    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        # discord.py and friends expect exactly this content type.
        return web.Response(
            status=status,
            text=json.dumps(body),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    async def _execute(self, request: web.Request) -> web.Response:
        if self._holds > 0:
            self._holds -= 1
            async with self.held_changed:
                self._held += 1
                self.held_changed.notify_all()
            try:
                await self._released.wait()
            finally:
                self._held -= 1
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        response = self._answer(request, body)
        self.requests.append(
            WebhookRequest(request.path, dict(request.query), body, response.status)
        )
        return response

    def _answer(self, request: web.Request, body: Any) -> web.Response:
        if request.match_info["id"] != WEBHOOK_ID:
            return self._json(404, {"message": "Unknown Webhook", "code": 10015})
        if request.match_info["token"] != WEBHOOK_TOKEN:
            return self._json(401, {"message": "Invalid Webhook Token", "code": 50027})
        if request.content_type != "application/json" or not isinstance(body, dict):
            return self._json(400, {"message": "Cannot send an empty message", "code": 50006})
        operation = spec().match("POST", f"/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}")
        assert operation is not None
        errors = spec().validate(operation, body)
        if errors:
            return self._json(
                400, {"message": "Invalid Form Body", "code": 50035, "errors": errors}
            )
        if not body.get("content") and not body.get("embeds"):
            return self._json(400, {"message": "Cannot send an empty message", "code": 50006})
        if self._script:
            scripted = self._script.pop(0)
            if scripted.status == 429:
                headers = {
                    "Retry-After": str(math.ceil(scripted.retry_after)),
                    "X-RateLimit-Scope": "shared",
                }
                if scripted.header_only:
                    return web.Response(status=429, headers=headers)
                return self._json(
                    429,
                    {
                        "message": "You are being rate limited.",
                        "retry_after": scripted.retry_after,
                        "global": False,
                    },
                    headers,
                )
            return self._json(scripted.status, {"message": "500: Internal Server Error", "code": 0})
        message = {
            "id": str(next(self._ids)),
            "type": 0,
            "content": body.get("content", ""),
            "channel_id": CHANNEL_ID,
            "author": {
                "id": WEBHOOK_ID,
                "username": body.get("username") or "Captain Hook",
                "avatar": None,
                "discriminator": "0000",
                "public_flags": 0,
                "flags": 0,
                "bot": True,
                "global_name": None,
                "primary_guild": None,
            },
            "attachments": [],
            "embeds": [],
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "mention_everyone": False,
            "tts": False,
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "flags": 0,
            "components": [],
            "webhook_id": WEBHOOK_ID,
        }
        # The fake's own answer must have the shape Discord documents, too.
        assert spec().validate_response(operation, 200, message) == []
        self.messages.append(message)
        if request.query.get("wait") == "true":
            return self._json(200, message)
        return web.Response(status=204)
