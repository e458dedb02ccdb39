"""The Messages API: `POST /v1/messages` — `{id, type: "message", role: "assistant", content:
[{type: "text", text}], model, stop_reason, stop_sequence, usage: {input_tokens, output_tokens,
cache_creation_input_tokens, cache_read_input_tokens, cache_creation: {...}}}`.

The reply text and usage are set by the test (`reply`, `next_usage`), or derived from the
prompt; `model_override` names another model in the answer. Requests need a key (`x-api-key`,
or `Authorization: Bearer` as SDK 2.x sends it) and `anthropic-version` (401 / 400 otherwise,
Anthropic's error body). `fail(status, times)` answers errors (500 api_error, 529
overloaded_error, 429 ...); `hang(times)` holds requests until the client gives up or the fake
stops (`wait_hanging` waits until they are held). `calls` counts the Messages calls. A call
made with a registered key adds to that key's usage (see the Admin API)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.anthropic.admin import FakeKey, UsageRecord
from tests.fakes.anthropic.server import Failure, RecordedRequest, Server, credential, error_body


class Messages(Server):
    # Set by FakeAnthropic, a dataclass: its fields are what a test configures and reads.
    model_override: str | None
    keys: list[FakeKey]
    usage: list[UsageRecord]
    clock: Callable[[], datetime]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.calls = 0
        self.reply: str | Callable[[dict[str, Any]], str] = "ok"
        self._next_usage: list[dict[str, int]] = []
        self._failures: list[Failure] = []
        self._hangs = 0
        self._released = asyncio.Event()
        self._hanging = 0
        self.hanging_changed = asyncio.Condition()
        self._ids = itertools.count(1)

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_post("/v1/messages", self._messages)

    async def stop(self) -> None:
        self._released.set()
        await super().stop()

    # --- control ----------------------------------------------------------------------------
    def next_usage(self, **usage: int) -> None:
        """The usage of the next Messages reply (input_tokens, output_tokens,
        cache_read_input_tokens, cache_creation_5m / cache_creation_1h)."""
        self._next_usage.append(usage)

    def fail(self, status: int = 500, times: int = 1, message: str = "fake failure") -> None:
        """The next `times` Messages requests answer `status` with Anthropic's error body."""
        self._failures.append(Failure(status, times, message))

    def hang(self, times: int = 1) -> None:
        """The next `times` Messages requests never answer (until `release()` or stop)."""
        self._hangs += times

    def release(self) -> None:
        self._released.set()

    async def wait_hanging(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` requests are being held."""
        async with asyncio.timeout(timeout), self.hanging_changed:
            await self.hanging_changed.wait_for(lambda: self._hanging >= count)

    def messages_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/messages"]

    # --- HTTP ---------------------------------------------------------------------------------
    async def _messages(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        self.calls += 1
        secret = credential(request)
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
