"""What the fake Anthropic API does for every request: its life cycle, the recorded
`requests` (keeping how a request authenticated, never the key), and Anthropic's error body.

Each API module adds its routes in `_add_routes` and its state in `__post_init__`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Self

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
class Failure:
    status: int
    times: int
    message: str


def credential(request: web.Request) -> str | None:
    """The API key: `x-api-key`, or the bearer token newer SDKs send in `Authorization`."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Server:
    # Set by FakeAnthropic, a dataclass: its fields are what a test configures and reads.
    requests: list[RecordedRequest]

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self, port: int = 0) -> Self:
        app = web.Application()
        self._add_routes(app)
        self._runner, port = await serve(app, port)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def _add_routes(self, app: web.Application) -> None:
        """Each API module adds its routes here, then calls on to the next."""

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
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
    def _take(failures: list[Failure]) -> Failure | None:
        if not failures:
            return None
        failure = failures[0]
        failure.times -= 1
        if failure.times <= 0:
            failures.pop(0)
        return failure
