"""The fake Discord's server: its life cycle, and what every REST request goes through.

Every REST request under `/api/v10` is matched to an operation of Discord's OpenAPI
description (the extract in tests/fakes/data/, see tests/fakes/discord_openapi.py) and its body
is validated against that operation's request schema; a request that breaks it is answered 400
as Discord would and recorded in `schema_errors`, which the test harness turns into a test
failure. The fake's own successful answers are checked against the operation's response schema
the same way, so what discord.py parses has the shape Discord documents. Requests to endpoints
the fake does not serve go to `unhandled`. Every response carries
`Content-Type: application/json` exactly (discord.py does not parse a charset suffix).

A request is answered by the `_op_<operationId>` method of its resource's module, once the bot
token is checked (webhook and interaction
endpoints authenticate by their path) and unless a test asked it to fail with `fail(...)`
(5xx, 429 with `retry_after`, or a network drop).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes import serve
from tests.fakes.discord_openapi import DiscordSpec, Operation
from tests.waiting import wait_until

DISCORD_EPOCH_MS = 1_420_070_400_000
API_PREFIX = "/api/v10"

_STARTED = web.RequestKey("fake_discord_started", float)


def request_started(request: web.Request) -> float:
    """When the fake began reading a request (before body parsing and validation)."""
    return float(request[_STARTED])


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class RecordedRequest:
    method: str
    path: str
    operation_id: str | None
    query: dict[str, str]
    body: Any
    files: list[tuple[str, bytes]]
    status: int = 0


@dataclass
class Failure:
    """Make the next `times` requests of an operation fail."""

    operation_id: str
    status: int  # 0 drops the connection instead of answering
    times: int
    retry_after: float = 0.05
    channel_id: str | None = None


def _written_at(predicate: Callable[[], Any]) -> str:
    """A predicate's name and where it is written, to say what a wait was for."""
    code = getattr(predicate, "__code__", None)
    where = f" ({Path(code.co_filename).name}:{code.co_firstlineno})" if code else ""
    return f"{getattr(predicate, '__qualname__', repr(predicate))}{where}"


def _placeholder_ids_as_strings(body: Any) -> Any:
    """A message that uploads files lists them in `attachments` with `id` = n of `files[n]`,
    an integer (as discord.py and Discord's own examples send), while the OpenAPI types every
    attachment id as a snowflake string: validate the placeholder as the string it stands for."""
    if isinstance(body, dict) and isinstance(body.get("attachments"), list):
        return {
            **body,
            "attachments": [
                {**a, "id": str(a["id"])}
                if isinstance(a, dict) and isinstance(a.get("id"), int)
                else a
                for a in body["attachments"]
            ],
        }
    return body


class Server:
    """A local Discord: REST + gateway. `await start()`, then point discord.py at `api_url`."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token-0123456789",
        application_id: int = 900_000_000_000_000_001,
        bot_user_id: int = 900_000_000_000_000_001,
        owner_id: int = 800_000_000_000_000_001,
        guild_id: int = 700_000_000_000_000_001,
        role_ids: dict[str, int] | None = None,
        channel_ids: dict[str, int] | None = None,
        spec: DiscordSpec | None = None,
    ) -> None:
        self.token = token
        self.application_id = application_id
        self.bot_user_id = bot_user_id
        self.owner_id = owner_id
        self.guild_id = guild_id
        self.role_ids = role_ids or {}
        self.channel_ids = channel_ids or {"conductor-e": 700_000_000_000_000_100}
        self.spec = spec or DiscordSpec()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

        self.requests: list[RecordedRequest] = []
        self.schema_errors: list[str] = []
        self.unhandled: list[str] = []
        self.failures: list[Failure] = []

    # --- life cycle ---------------------------------------------------------------------------
    async def start(self, port: int = 0) -> None:
        app = web.Application()
        self._add_routes(app)
        self._runner, self.port = await serve(app, port)

    def _add_routes(self, app: web.Application) -> None:
        """The REST API; the gateway adds its WebSocket."""
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)

    async def close(self) -> None:
        if self._runner is not None:
            # Stop listening first, as Discord going away would: a client that reconnects when
            # its socket closes is refused, not let in to a server that is shutting down.
            for site in list(self._runner.sites):
                await site.stop()
        await self._hang_up()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hang_up(self) -> None:
        """Close the connections still open once no new one can come in (the gateway's)."""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # --- waiting ------------------------------------------------------------------------------
    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 5.0, *, what: str | None = None
    ) -> None:
        """Wait until `predicate()` is true (what the fake has seen, or the bot's own state),
        or fail after `timeout` naming `what` (by default, where the predicate is written)."""
        await wait_until(predicate, timeout=timeout, what=what or _written_at(predicate))

    # --- ids ----------------------------------------------------------------------------------
    def snowflake(self) -> str:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._ids) & 0x3FFFFF))

    # --- REST ---------------------------------------------------------------------------------
    @staticmethod
    def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    @staticmethod
    def _error(status: int, message: str, code: int = 0, **extra: Any) -> web.Response:
        return Server.json({"message": message, "code": code, **extra}, status)

    async def _read_body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
        if request.content_type == "multipart/form-data":
            body: Any = None
            files: list[tuple[str, bytes]] = []
            reader = await request.multipart()
            async for part in reader:
                data = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":  # type: ignore[union-attr]
                    body = json.loads(data)
                else:
                    files.append((part.filename or part.name or "file", bytes(data)))  # type: ignore[union-attr]
            return body, files
        raw = await request.read()
        if not raw:
            return None, []
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text=f"unexpected {request.content_type}")
        return json.loads(raw), []

    async def _rest(self, request: web.Request) -> web.Response:
        request[_STARTED] = time.perf_counter()
        path = "/" + request.match_info["tail"]
        body, files = await self._read_body(request)
        operation = self.spec.match(request.method, path)
        record = RecordedRequest(
            request.method,
            path,
            operation.operation_id if operation else None,
            dict(request.query),
            body,
            files,
        )
        self.requests.append(record)
        response = await self._answer(request, operation, body, files)
        record.status = response.status
        if operation is not None and 200 <= response.status < 300 and response.body:
            assert isinstance(response.body, bytes)
            self.schema_errors.extend(
                f"{request.method} {operation.template} answered {response.status}: {error}"
                for error in self.spec.validate_response(
                    operation, response.status, json.loads(response.body)
                )
            )
        return response

    async def _answer(
        self,
        request: web.Request,
        operation: Operation | None,
        body: Any,
        files: list[tuple[str, bytes]],
    ) -> web.Response:
        if operation is None:
            self.unhandled.append(
                f"{request.method} {request.path} is not a Discord endpoint the fake serves "
                "(to serve one: add its `_op_<operationId>` handler, then run "
                "scripts/extract_discord_openapi.py)"
            )
            return self._error(404, "404: Not Found")
        errors = (
            self.spec.validate(operation, _placeholder_ids_as_strings(body))
            if self.spec.has_body(operation)
            else []
        )
        if errors:
            self.schema_errors.extend(
                f"{request.method} {operation.template}: {error}" for error in errors
            )
            return self._error(
                400, "Invalid Form Body", 50035, errors={"_errors": [{"message": errors[0]}]}
            )
        # Webhooks authenticate with their token in the path; GET /gateway needs nothing.
        public = operation.template.startswith(("/webhooks/", "/interactions/"))
        public = public or operation.operation_id == "get_gateway"
        if not public and request.headers.get("Authorization") != f"Bot {self.token}":
            return self._error(401, "401: Unauthorized")
        failure = self._failure_for(operation)
        if failure is not None:
            if failure.status == 0:
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            if failure.status == 429:
                retry = failure.retry_after
                return self.json(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": retry,
                        "global": False,
                    },
                    429,
                    {
                        # Discord's own 429s come through its proxy; a 429 without `Via` is
                        # how discord.py recognises a Cloudflare ban, which it does not retry.
                        "Via": "1.1 google",
                        "Retry-After": str(retry),
                        "X-RateLimit-Scope": "user",
                        "X-RateLimit-Bucket": "fake",
                        "X-RateLimit-Limit": "5",
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset-After": str(retry),
                    },
                )
            return self._error(failure.status, f"{failure.status}: Fake failure")
        handler = getattr(self, "_op_" + operation.operation_id, None)
        if handler is None:
            self.unhandled.append(f"{request.method} {operation.template} is not implemented")
            return self._error(404, "404: Not Found")
        result: web.Response = await handler(request, operation.params, body or {}, files)
        return result

    def fail(
        self,
        operation_id: str,
        status: int,
        times: int = 1,
        *,
        retry_after: float = 0.05,
        channel_id: int | None = None,
    ) -> None:
        """Fail the next `times` requests of an operation (status 0: drop the connection)."""
        self.failures.append(
            Failure(
                operation_id,
                status,
                times,
                retry_after,
                None if channel_id is None else str(channel_id),
            )
        )

    def _failure_for(self, operation: Operation) -> Failure | None:
        for failure in self.failures:
            if failure.operation_id != operation.operation_id or failure.times <= 0:
                continue
            if failure.channel_id and operation.params.get("channel_id") != failure.channel_id:
                continue
            failure.times -= 1
            return failure
        return None
