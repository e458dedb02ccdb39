"""What every request to the fake GitHub goes through, whatever its resource.

* `Authorization: token …` / `Bearer …` checked when a token is set (401 "Bad credentials");
* `X-RateLimit-Limit/Remaining/Reset/Used/Resource` per resource (core: 5,000 an hour; search:
  30 a minute by default); a spent window answers 403 with GitHub's primary-limit message, and
  `GET /rate_limit` (open, not counted) shows every window;
* strong ETags over the body, and 304 Not Modified on a matching `If-None-Match` (a 304 does
  not count against the rate limit, as GitHub documents for authorised requests);
* `Link` pagination (rel next/last, and prev/first after page one) with absolute URLs, for the
  resources that list.

Faults the test controls: `fail()` (any status, e.g. 500), `secondary_rate_limit()` (403 with
Retry-After and GitHub's message), `too_many_requests()` (429), `spend_rate_limit()`, `hang()`
(requests wait until `release()`: for client timeouts without sleeping). Every request is
recorded in `requests`.

Each resource module adds its routes in `_add_routes` and its state in `__init__`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes import serve

DOCS = "https://docs.github.com/rest"
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {rid}."
)
PRIMARY_MESSAGE = (
    "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, "
    "please include the request ID {rid}."
)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    status: int = 0


@dataclass
class Fault:
    status: int
    times: int
    path: str  # a prefix of the request path
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class RateWindow:
    limit: int
    seconds: int
    remaining: int = -1
    reset: int = 0
    used: int = 0

    def current(self, now: float) -> RateWindow:
        if self.remaining < 0 or now >= self.reset:
            self.remaining, self.used, self.reset = self.limit, 0, int(now) + self.seconds
        return self


class Server:
    """The fake's HTTP server: life cycle, the middleware, and the answers' common shapes."""

    def __init__(self, token: str | None = "ghp_fake_token", *, search_limit: int = 30) -> None:
        self.token = token
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.windows = {"core": RateWindow(5000, 3600), "search": RateWindow(search_limit, 60)}
        self._hanging = 0
        self._release = asyncio.Event()
        self._clock = itertools.count(1)
        self._base_time = datetime(2025, 1, 1, tzinfo=UTC)
        self._runner: web.AppRunner | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        self._add_routes(app)
        app.middlewares.append(self._middleware)
        self._runner, port = await serve(app, port)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def _add_routes(self, app: web.Application) -> None:
        """Each resource module adds its routes here, then calls on to the next."""
        app.router.add_get("/rate_limit", self._get_rate_limit)

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _tick(self) -> datetime:
        """A strictly increasing time, so updated_at orders edits like GitHub's clock would."""
        return self._base_time + timedelta(seconds=next(self._clock))

    # --- faults -------------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        path: str = "/",
        headers: dict[str, str] | None = None,
        message: str | None = None,
    ) -> None:
        """The next `times` requests under `path` answer `status`."""
        body = {"message": message or _default_message(status), "documentation_url": DOCS}
        self.faults.append(Fault(status, times, path, dict(headers or {}), body))

    def secondary_rate_limit(
        self, *, retry_after: int | None = 60, times: int = 1, path: str = "/search/"
    ) -> None:
        """403 with GitHub's secondary-limit message (and Retry-After, unless None)."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self.faults.append(
            Fault(
                403,
                times,
                path,
                headers,
                {
                    "message": SECONDARY_MESSAGE.format(rid=_request_id()),
                    "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api"
                    "#about-secondary-rate-limits",
                },
            )
        )

    def too_many_requests(
        self, *, retry_after: int = 30, times: int = 1, path: str = "/search/"
    ) -> None:
        self.faults.append(
            Fault(
                429,
                times,
                path,
                {"Retry-After": str(retry_after)},
                {"message": SECONDARY_MESSAGE.format(rid=_request_id()), "documentation_url": DOCS},
            )
        )

    def spend_rate_limit(self, resource: str = "search", *, reset_in: int = 30) -> None:
        """Use up a resource's window; it resets `reset_in` seconds from now."""
        window = self.windows[resource].current(time.time())
        window.used += window.remaining
        window.remaining = 0
        window.reset = int(time.time()) + reset_in

    def hang(self, times: int = 1) -> None:
        """The next `times` requests wait until `release()` (or stop): a client timeout."""
        self._hanging += times
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    # --- the middleware -----------------------------------------------------------------------

    def _rate_limit_body(self) -> dict[str, Any]:
        """GET /rate_limit in GitHub's shape: every window's limit, remaining, reset, used."""
        now = time.time()
        resources = {}
        for name, window in self.windows.items():
            current = window.current(now)
            resources[name] = {
                "limit": current.limit,
                "remaining": current.remaining,
                "reset": current.reset,
                "used": current.used,
            }
        return {"resources": resources, "rate": resources["core"]}

    async def _get_rate_limit(self, request: web.Request) -> web.Response:
        return self._json(self._rate_limit_body(), 200)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        response = await self._answer(request, handler, headers)
        self.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query), headers, response.status
            )
        )
        return response

    async def _answer(
        self, request: web.Request, handler: Any, headers: dict[str, str]
    ) -> web.StreamResponse:
        if self._hanging > 0:
            self._hanging -= 1
            await self._release.wait()
        resource = "search" if request.path.startswith("/search/") else "core"
        window = self.windows[resource].current(time.time())
        for fault in self.faults:
            if fault.times > 0 and request.path.startswith(fault.path):
                fault.times -= 1
                response = self._json(fault.body, fault.status, resource)
                response.headers.update(fault.headers)
                return response
        if request.path == "/rate_limit":
            # Open without a token and not counted against any limit, as on GitHub.
            return await handler(request)
        if self.token is not None:
            auth = headers.get("authorization", "")
            if auth not in (f"token {self.token}", f"Bearer {self.token}"):
                return self._json(
                    {"message": "Bad credentials", "documentation_url": DOCS}, 401, resource
                )
        if window.remaining <= 0:
            return self._json(
                {"message": PRIMARY_MESSAGE.format(rid=_request_id()), "documentation_url": DOCS},
                403,
                resource,
            )
        response = await handler(request)
        if response.status == 200:
            etag = '"' + hashlib.sha256(response.body).hexdigest()[:40] + '"'
            response.headers["ETag"] = etag
            if etag in [tag.strip() for tag in headers.get("if-none-match", "").split(",")]:
                # Not counted against the rate limit, as GitHub documents for 304s.
                not_modified = web.Response(status=304)
                not_modified.headers["ETag"] = etag
                self._rate_headers(not_modified, resource)
                return not_modified
        window.remaining -= 1
        window.used += 1
        self._rate_headers(response, resource)
        return response

    def _rate_headers(self, response: web.StreamResponse, resource: str) -> None:
        window = self.windows[resource]
        response.headers.update(
            {
                "X-RateLimit-Limit": str(window.limit),
                "X-RateLimit-Remaining": str(max(window.remaining, 0)),
                "X-RateLimit-Reset": str(window.reset),
                "X-RateLimit-Used": str(window.used),
                "X-RateLimit-Resource": resource,
                "X-GitHub-Request-Id": _request_id(),
            }
        )

    # --- answers ------------------------------------------------------------------------------

    def _json(self, body: Any, status: int = 200, resource: str | None = None) -> web.Response:
        response = web.Response(
            body=json.dumps(body).encode(),
            status=status,
            content_type="application/json",
            charset="utf-8",
        )
        if resource is not None:
            self._rate_headers(response, resource)
        return response

    def _not_found(self) -> web.Response:
        return self._json({"message": "Not Found", "documentation_url": DOCS}, 404)

    def _validation(self, field_name: str, code: str, message: str | None = None) -> web.Response:
        error: dict[str, Any] = {"resource": "Search", "field": field_name, "code": code}
        if message:
            error["message"] = message
        return self._json(
            {"message": "Validation Failed", "errors": [error], "documentation_url": DOCS}, 422
        )

    def _page(
        self, request: web.Request, items: list[Any], *, cap: int | None = None
    ) -> tuple[list[Any], dict[str, str]] | web.Response:
        try:
            per_page = min(100, max(1, int(request.query.get("per_page", "30"))))
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            return self._json({"message": "Invalid page", "documentation_url": DOCS}, 422)
        reachable = len(items) if cap is None else min(len(items), cap)
        if cap is not None and (page - 1) * per_page >= cap:
            return self._json(
                {
                    "message": "Only the first 1000 search results are available",
                    "documentation_url": DOCS,
                },
                422,
            )
        last = max(1, -(-reachable // per_page))
        links = []

        def link(number: int, rel: str) -> str:
            query = {**request.query, "per_page": str(per_page), "page": str(number)}
            return f'<{self.url}{request.path}?{urlencode(query)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        headers = {"Link": ", ".join(links)} if links else {}
        start = (page - 1) * per_page
        return items[start : min(start + per_page, reachable)], headers

    def _listing(self, request: web.Request, items: list[Any]) -> web.Response:
        """A paginated JSON array of `items`, with its `Link` header."""
        paged = self._page(request, items)
        if isinstance(paged, web.Response):
            return paged
        page, headers = paged
        response = self._json(page)
        response.headers.update(headers)
        return response


def repo_of(request: web.Request) -> str:
    """The `{owner}/{repo}` of a request's path, lower-cased as the fake keys its state."""
    return f"{request.match_info['owner']}/{request.match_info['repo']}".lower()


def _default_message(status: int) -> str:
    return {
        400: "Bad Request",
        401: "Bad credentials",
        403: "Forbidden",
        404: "Not Found",
        422: "Validation Failed",
        500: "Server Error",
        502: "Server Error",
        503: "Service Unavailable",
    }.get(status, "Error")


def _request_id() -> str:
    return uuid.uuid4().hex[:16].upper()
