"""The rules every request meets before a handler sees it, whatever its route.

One middleware, so that no route can forget them: a web page on the same network cannot post
events or claim work, and neither what PostgreSQL cannot store nor a body that never ends
reaches a handler. Answers name no server version, and the dashboard's pages cannot be framed.
The README's "The HTTP API" lists the rules with their statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bot.errors import (
    Forbidden,
    InvalidInput,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from bot.web.keys import CONTEXT, MAX_BODY_BYTES
from store.database import loads_as_json_would
from store.storable import MAX_INT_DIGITS, text_problem, unstorable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A client has this long to send its whole body once its headers are in.
BODY_TIMEOUT = 10.0
WEBHOOK_PATH = "/api/webhook/github"
JSON_BODY = web.RequestKey("json_body", object)
# Batches of independent items (the runtime's log lines), whose route keeps what it can of
# each item: one bad line must not cost the batch.
ITEM_CHECKED_PATHS = frozenset({"/api/agent-logs"})
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Headers whose values are kept as metadata or compared with secrets.
_ASCII_HEADERS = (
    "Authorization",
    "X-Request-Id",
    "Idempotency-Key",
    "Last-Event-ID",
    "Origin",
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-Hub-Signature-256",
)


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check a request's headers, origin, content type, size, time and JSON before its handler.

    A write under /api/ is read and parsed here and waits in `request[JSON_BODY]`
    (`json_body`), so a new write route gets all of this by being under /api/. The GitHub
    webhook is the exception: it checks its signature and its own, larger cap before it reads
    (`read_body`)."""
    check_headers(request)
    if request.match_info.http_exception is not None:
        return await handler(request)  # 404 or 405: nothing will read the body
    if request.method in _WRITE_METHODS:
        refuse_foreign_origin(request)
        if request.path.startswith("/api/") and request.path != WEBHOOK_PATH:
            if request.content_type != "application/json":
                raise UnsupportedMediaType(
                    "writes need Content-Type: application/json "
                    f"(this request sent {request.content_type!r})"
                )
            length = request.content_length
            if length is not None and length > MAX_BODY_BYTES:
                raise PayloadTooLarge(MAX_BODY_BYTES)
            if request.content.is_eof():  # all here already (a small body usually is)
                raw = await request.read()
            else:
                async with body_deadline():
                    raw = await request.read()  # within client_max_size (413 past it)
            request[JSON_BODY] = parse_json(raw, whole=request.path not in ITEM_CHECKED_PATHS)
        elif request.path != WEBHOOK_PATH and request.body_exists:
            async with body_deadline():
                await request.read()  # the login form: bounded in time too; kept for .post()
    return await handler(request)


def json_body(request: web.Request) -> Any:
    """The request's JSON body, read and checked by the guard."""
    return request[JSON_BODY]


def check_headers(request: web.Request) -> None:
    """400 for a header value we use that is not printable ASCII, or a path or query value
    holding NUL or bytes that are not UTF-8 (they would reach SQL as text)."""
    for name in _ASCII_HEADERS:
        value = request.headers.get(name)
        if value is not None and not (value.isascii() and value.isprintable()):
            raise InvalidInput(f"the {name} header must be printable ASCII")
    for name, value in [("path", request.path), *request.query.items()]:
        if text_problem(name) is not None or text_problem(value) is not None:
            raise InvalidInput(f"the query parameter or path {name!r} holds a NUL or bad byte")


def _own_hosts(request: web.Request) -> set[str]:
    hosts = {request.host.lower()}
    forwarded = request.headers.get("X-Forwarded-Host")
    if forwarded:
        hosts.add(forwarded.split(",")[0].strip().lower())
    return hosts


def refuse_foreign_origin(request: web.Request) -> None:
    """403 when a browser says the request comes from another site's page."""
    origin = request.headers.get("Origin")
    if origin is not None:
        host = urlsplit(origin).netloc.lower() if origin != "null" else ""
        if host not in _own_hosts(request):
            raise Forbidden(f"requests from the origin {origin!r} are refused")
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise Forbidden("cross-site requests are refused")


def refuse_browser(request: web.Request) -> None:
    """Claims change state on a GET (the agents' contract). An agent sends no Origin and
    accepts JSON; a page's <img>, <script>, link or no-cors fetch does not look like that:
    a foreign Origin or Sec-Fetch-Site, an Accept without JSON, or a browser's User-Agent
    without a bearer token is refused (403)."""
    refuse_foreign_origin(request)
    accept = request.headers.get("Accept", "*/*").lower()
    if not any(kind in accept for kind in ("application/json", "application/*", "*/*")):
        raise Forbidden("claims answer JSON: send Accept: application/json")
    browser = request.headers.get("User-Agent", "").startswith("Mozilla/")
    # Without CONDUCTOR_API_TOKENS an Authorization header is never checked, so it proves
    # nothing: a browser is refused whatever it sends. With tokens, the claim checks it.
    tokens = bool(request.app[CONTEXT].settings.api_tokens)
    if browser and ("Authorization" not in request.headers or not tokens):
        raise Forbidden("claims are for agents, not browsers")


@contextlib.asynccontextmanager
async def body_deadline() -> AsyncIterator[None]:
    """Reading a body takes at most BODY_TIMEOUT (RequestTimeout, 408, otherwise)."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            yield
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {BODY_TIMEOUT:.0f} seconds") from None


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, at most `limit` bytes: 413 decided from Content-Length before anything
    is read (411 without one), 408 when it does not arrive within BODY_TIMEOUT."""
    length = request.content_length
    if length is None:
        raise web.HTTPLengthRequired()
    if length > limit:
        raise PayloadTooLarge(limit)
    async with body_deadline():
        return await request.content.readexactly(length) if length else b""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput(f"the number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise InvalidInput(f"integers may have at most {MAX_INT_DIGITS} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not JSON: numbers must be finite")


def parse_json(raw: bytes, *, whole: bool = True) -> Any:
    """JSON as PostgreSQL's jsonb will hold it, or InvalidInput (400) saying why not: UTF-8
    only, no NaN/Infinity or numbers out of a double's range, integers of at most
    MAX_INT_DIGITS digits, and (unless `whole` is false: the route checks item by item) no NUL
    or lone surrogates, nesting within the store's limit.

    orjson reads the body where it reads it as json.loads would (store.database); elsewhere
    json.loads reads it as before and says precisely what is wrong."""
    try:
        value = loads_as_json_would(raw)
    except ValueError:
        value = _parse_exactly(raw)
    found = unstorable(value) if whole else None
    if found is not None:
        path, reason = found
        raise InvalidInput(f"the body cannot be stored: field {path!r}: {reason}")
    return value


def _parse_exactly(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            parse_constant=_no_constant,
        )
    except UnicodeDecodeError:
        raise InvalidInput("the body is not valid JSON: it is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput("the body is nested too deeply") from None


# --- response headers -------------------------------------------------------------------------

_PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: what every answer says about itself (and what it does not)."""
    response.headers["Server"] = "Conductor-E"
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    path = request.path
    if path == "/" or path.startswith("/dashboard/"):
        response.headers["Content-Security-Policy"] = _PAGE_POLICY
        response.headers["X-Frame-Options"] = "DENY"
    if path.startswith(("/dashboard/api/", "/api/")):
        response.headers["Cache-Control"] = "no-store"
