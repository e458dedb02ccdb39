"""The read-only dashboard: the page at `/`, its data under /dashboard/api, live updates by SSE.

`add_routes(app)` is all an application needs: it registers the routes, the static files and
the hub that follows the store for the page's server-sent events.

Live updates: one `EventFollower` per application process (started with the first subscriber)
fans each new event out to every connected page as a small `change` message naming the data
it touches (`board`, `agents`, `spend`, `runs`, `health`); the page re-fetches those. Each
message's SSE id is the event's global position, so a page that reconnects (EventSource does
so by itself, after the `retry:` delay) sends `Last-Event-ID` and is sent every event it
missed, read back from the store. A comment goes out every 15 seconds to keep proxies from
closing an idle stream and to notice a page that went away.

Access: open by default (leave it to the cluster's network policy), or with a token
(`CONDUCTOR_DASHBOARD_TOKEN`): then the page, its data and its event stream need the token as
`Authorization: Bearer <token>`, as `?token=<token>`, or the cookie the login form (or opening
`/?token=<token>` once) sets. The cookie holds an HMAC of the token, never the token itself.
The static files (HTML shell, CSS, JS) hold no data and are served to anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.context import AppContext
from bot.errors import InvalidInput, Unauthorized
from bot.services.dashboard import (
    COLUMN_KEYS,
    DEFAULT_PAGE,
    MAX_PAGE,
    Board,
    Card,
    DashboardService,
    Run,
    Spend,
    issue_url,
)
from bot.web.api import agent_json, int_param, json_response
from bot.web.auth import same_secret
from bot.web.keys import CONTEXT, SERVICES
from store import catalogue
from store.events import EventFollower, RecordedEvent
from store.projections import ExecutionLog

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
COOKIE = "conductor_dashboard"
HEARTBEAT_SECONDS = 15.0
RETRY_MILLISECONDS = 2_000
# Events a reconnecting page is sent one by one; further behind, it is told to reload its data.
CATCH_UP_LIMIT = 500
# Messages waiting for one slow page; past this it is dropped and catches up when it reconnects.
SUBSCRIBER_BACKLOG = 1_000

# Event positions are bigint; anything larger is no position.
MAX_POSITION = 2**63 - 1

AGENT_TYPES = frozenset({"HEARTBEAT", "AGENT_STUCK"})


def topics_for(event_type: str) -> list[str]:
    """Which of the page's data an event can change."""
    if event_type in catalogue.ISSUE_TYPES:
        return ["board"]
    if event_type in AGENT_TYPES:
        return ["agents", "board"]  # a stale holder marks its cards stuck
    if event_type.startswith("REPO_CONFIG_"):
        return ["board"]  # routing flags and broken configurations
    if event_type == "TOKEN_USAGE":
        return ["spend", "agents"]
    if event_type.startswith("EXECUTION_LOG_"):
        return ["board"]  # a card shows its last run's status
    if event_type == "BUDGET_THRESHOLD_CROSSED":
        return ["spend"]
    if event_type.startswith("COORDINATION_RUN_"):
        return ["runs", "health"]
    return []


@dataclass(frozen=True)
class Change:
    """What a page is told about one new event."""

    position: int
    type: str
    stream_id: str

    def message(self) -> bytes:
        data = {
            "position": self.position,
            "type": self.type,
            "streamId": self.stream_id,
            "topics": topics_for(self.type),
        }
        return sse_message("change", data, self.position)

    @classmethod
    def of(cls, event: RecordedEvent) -> Change:
        return cls(event.position, event.type, event.stream_id)


def sse_message(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return ("\n".join(lines) + "\n\n").encode()


@dataclass(eq=False)
class Subscription:
    """One connected page's queue of changes."""

    changes: deque[Change] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    closed: bool = False

    def push(self, change: Change) -> None:
        if len(self.changes) >= SUBSCRIBER_BACKLOG:
            self.overflowed = True
        else:
            self.changes.append(change)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


FollowerFactory = Callable[[int], EventFollower]


class DashboardHub:
    """One store follower per process, fanned out to every connected page."""

    def __init__(self, context: AppContext, follower_factory: FollowerFactory | None = None):
        self.context = context
        self.heartbeat_seconds = HEARTBEAT_SECONDS
        self._follower_factory = follower_factory or (
            lambda after: EventFollower(context.store, context.dsn, after_position=after)
        )
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def following(self) -> bool:
        return self._task is not None and not self._task.done()

    async def subscribe(self) -> Subscription:
        """Register a page; starts the follower (at the store's head) if it is not running.

        The subscription exists before the caller reads its own starting position, so every
        event after that position reaches it either from the store or from the follower.
        """
        if self._closed:
            raise web.HTTPServiceUnavailable(reason="the server is shutting down")
        subscription = Subscription()
        self._subscribers.add(subscription)
        try:
            async with self._starting:
                if not self.following:
                    head = await self.context.store.head_position()
                    self._task = asyncio.create_task(self._follow(head), name="dashboard-follower")
        except BaseException:
            self._subscribers.discard(subscription)  # the caller never got it to unsubscribe
            raise
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    async def _follow(self, head: int) -> None:
        follower = self._follower_factory(head)
        try:
            async for event in follower:
                change = Change.of(event)
                for subscription in list(self._subscribers):
                    subscription.push(change)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The pages reconnect and catch up from the store; the next one restarts us.
            log.exception("dashboard: the event follower stopped")
            for subscription in list(self._subscribers):
                subscription.close()
        finally:
            await follower.close()

    async def close(self) -> None:
        """End every page's stream (they reconnect elsewhere) and stop following."""
        self._closed = True
        for subscription in list(self._subscribers):
            subscription.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


# Wrong tokens allowed per client address in a sliding window, before the form answers 429.
LOGIN_ATTEMPTS = 5
LOGIN_WINDOW_SECONDS = 60.0


class LoginThrottle:
    """Failed logins per client address in the last LOGIN_WINDOW_SECONDS (in memory; bounded:
    the oldest addresses are forgotten first)."""

    MAX_CLIENTS = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client, deque())
        cutoff = self.clock() - LOGIN_WINDOW_SECONDS
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures

    def blocked(self, client: str) -> bool:
        return len(self._recent(client)) >= LOGIN_ATTEMPTS

    def failed(self, client: str) -> None:
        failures = self._recent(client)
        failures.append(self.clock())
        self._failures.pop(client, None)
        self._failures[client] = failures  # most recent last
        while len(self._failures) > self.MAX_CLIENTS:
            del self._failures[next(iter(self._failures))]


HUB = web.AppKey("dashboard_hub", DashboardHub)
SERVICE = web.AppKey("dashboard_service", DashboardService)
TOKEN: web.AppKey[str | None] = web.AppKey("dashboard_token")
LOGIN_THROTTLE = web.AppKey("dashboard_login_throttle", LoginThrottle)

_UNSET: Any = object()


def add_routes(app: web.Application, *, token: str | None = _UNSET) -> None:
    """Serve the dashboard from `app` (which must already carry its CONTEXT).

    The token comes from the settings (`dashboard_token`, CONDUCTOR_DASHBOARD_TOKEN) unless
    given here; None leaves the dashboard open.
    """
    context = app[CONTEXT]
    if token is _UNSET:
        configured = context.settings.dashboard_token
        token = configured.get_secret_value() if configured is not None else None
    app[TOKEN] = token or None
    app[SERVICE] = app[SERVICES].dashboard
    app[HUB] = DashboardHub(context)
    app[LOGIN_THROTTLE] = LoginThrottle()
    app.on_shutdown.append(_close_hub)
    app.router.add_get("/", page)
    app.router.add_post("/dashboard/login", login)
    app.router.add_get("/dashboard/api/board", board)
    app.router.add_get("/dashboard/api/agents", agents)
    app.router.add_get("/dashboard/api/spend", spend)
    app.router.add_get("/dashboard/api/runs", runs)
    app.router.add_get("/dashboard/api/health", health)
    app.router.add_get("/dashboard/events", events)
    app.router.add_static("/dashboard/static/", STATIC_DIR, name="dashboard-static")


async def _close_hub(app: web.Application) -> None:
    # on_shutdown runs before the server waits for open requests: ending the event streams
    # here keeps them from holding a graceful shutdown for its whole grace period.
    await app[HUB].close()


# --- access -----------------------------------------------------------------------------------


def _session_value(token: str) -> str:
    return hmac.new(token.encode(), b"conductor-e dashboard session", hashlib.sha256).hexdigest()


def _presented_token(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token") or None


def is_authorised(request: web.Request) -> bool:
    """True when the dashboard is open or the request carries the token or the session cookie."""
    token = request.app[TOKEN]
    if token is None:
        return True
    presented = _presented_token(request)
    if presented is not None and same_secret(presented, token):
        return True
    cookie = request.cookies.get(COOKIE)
    return cookie is not None and same_secret(cookie, _session_value(token))


def _require_access(request: web.Request) -> None:
    if not is_authorised(request):
        raise Unauthorized(
            "the dashboard needs its token: Authorization: Bearer <token>, ?token=, or log in at /"
        )


def _with_session(response: web.StreamResponse, request: web.Request) -> web.StreamResponse:
    token = request.app[TOKEN]
    assert token is not None
    response.set_cookie(
        COOKIE,
        _session_value(token),
        httponly=True,
        samesite="Strict",
        # Behind a TLS-terminating proxy the request itself is plain HTTP.
        secure=request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https",
        max_age=30 * 24 * 3600,
        path="/",
    )
    return response


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Conductor-E · sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="dashboard/static/dashboard.css"></head>
<body class="login"><form method="post" action="dashboard/login" class="login-form">
<h1>Conductor-E</h1><p>This dashboard needs its access token.</p>{error}
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus
required></label><button type="submit">Open the dashboard</button></form></body></html>
"""


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _login_page(error: str | None = None, status: int = 401) -> web.Response:
    shown = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return web.Response(
        text=_LOGIN_PAGE.format(error=shown),
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


async def page(request: web.Request) -> web.StreamResponse:
    """The dashboard page; with a token, the login form until the token is presented."""
    if not is_authorised(request):
        wrong = "token" in request.query
        return _login_page("That token is not valid." if wrong else None)
    if request.app[TOKEN] is not None and "token" in request.query:
        # Trade the token in the address bar for the session cookie, and drop it from the URL.
        return _with_session(_see_other("./"), request)
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def login(request: web.Request) -> web.StreamResponse:
    """The login form's target: sets the session cookie and goes back to the page."""
    if request.app[TOKEN] is None:
        return _see_other("../")
    throttle = request.app[LOGIN_THROTTLE]
    client = request.remote or "unknown"
    if throttle.blocked(client):
        return _login_page(
            f"Too many wrong tokens: try again in {LOGIN_WINDOW_SECONDS:.0f} seconds.",
            status=429,
        )
    form = await request.post()
    presented = form.get("token")
    token = request.app[TOKEN]
    assert token is not None
    if not isinstance(presented, str) or not same_secret(presented, token):
        throttle.failed(client)
        return _login_page("That token is not valid.")
    return _with_session(_see_other("../"), request)


# --- data -------------------------------------------------------------------------------------


def card_json(card: Card, github_api_url: str) -> dict[str, Any]:
    issue = card.issue
    return {
        "streamId": issue.stream_id,
        "repo": issue.repo,
        "issueNumber": issue.number,
        "title": issue.title,
        "url": issue_url(issue, github_api_url),
        "priority": issue.priority,
        "state": issue.state,
        "agent": card.agent,
        "assignee": issue.assignee,
        "reviewer": issue.reviewer,
        "attempt": issue.attempt,
        "prNumber": issue.pr_number,
        "escalated": issue.escalated,
        "humanGate": issue.human_gate,
        "held": issue.held,
        "heldBy": issue.held_by,
        "heldReason": issue.held_reason,
        "stateSince": issue.state_since,
        "lastActivity": issue.last_activity,
        "stuck": card.stuck,
        "stuckReason": card.stuck_reason,
        "unroutable": card.unroutable,
        "route": card.route,
        "gate": card.gate,
        "lastRun": None if card.last_run is None else last_run_json(card.last_run),
    }


def last_run_json(run: ExecutionLog) -> dict[str, Any]:
    """What a card says of the agent runtime's last run on its issue."""
    return {
        "id": run.id,
        "status": run.status,
        "agent": run.agent_id,
        "model": run.model,
        "steps": len(run.steps),
        "startedAt": run.started_at,
        "completedAt": run.completed_at,
        "prNumber": run.pr_number,
    }


def board_json(board: Board, github_api_url: str, limit: int) -> dict[str, Any]:
    return {
        "now": board.now,
        "columns": [
            {
                "key": column.key,
                "title": column.title,
                "total": column.total,
                "offset": column.offset,
                "limit": limit,
                "stuck": column.stuck,
                "unroutable": column.unroutable,
                "cards": [card_json(card, github_api_url) for card in column.cards],
            }
            for column in board.columns
        ],
        "brokenConfigs": [{"repo": repo, "error": error} for repo, error in board.broken_configs],
    }


async def board(request: web.Request) -> web.Response:
    """Every column's first page; with `state=`, one column from `offset`."""
    _require_access(request)
    service = request.app[SERVICE]
    limit = int_param(request, "limit", DEFAULT_PAGE, low=1, high=MAX_PAGE)
    state = request.query.get("state")
    if state:
        if state not in COLUMN_KEYS:
            raise InvalidInput(f"query parameter 'state' must be one of {', '.join(COLUMN_KEYS)}")
        offset = int_param(request, "offset", 0, low=0, high=10_000_000)
        result = await service.column(state, offset, limit)
    else:
        result = await service.board(limit)
    return json_response(board_json(result, request.app[CONTEXT].settings.github_api_url, limit))


async def agents(request: web.Request) -> web.Response:
    _require_access(request)
    context = request.app[CONTEXT]
    now, found = await request.app[SERVICE].agents()
    return json_response(
        {
            "now": now,
            "staleAfterSeconds": context.stale_after.total_seconds(),
            "agents": [agent_json(a) for a in found],
        }
    )


def spend_json(spend: Spend) -> dict[str, Any]:
    return {
        "now": spend.now,
        "days": [day.isoformat() for day in spend.days],
        "todayUsd": spend.today_usd,
        "totalUsd": spend.total_usd,
        "priceSources": spend.price_sources,
        "agents": [
            {
                "agentId": a.agent_id,
                "dailyUsd": a.daily_usd,
                "todayUsd": a.today_usd,
                "totalUsd": a.total_usd,
                "budgetUsd": a.budget_usd,
                "overBudget": a.over_budget,
                "basis": a.spend.basis,
                "unpricedEvents": a.spend.unpriced_events,
                "models": [m.to_dict() for m in a.models],
            }
            for a in spend.agents
        ],
    }


async def spend(request: web.Request) -> web.Response:
    _require_access(request)
    days = int_param(request, "days", 30, low=1, high=366)
    return json_response(spend_json(await request.app[SERVICE].spend(days)))


def run_json(run: Run) -> dict[str, Any]:
    return {
        "position": run.position,
        "recordedAt": run.recorded_at,
        "outcome": "completed" if run.ok else "failed",
        "fields": run.fields,
        "errors": run.errors,
    }


async def runs(request: web.Request) -> web.Response:
    _require_access(request)
    limit = int_param(request, "limit", 10, low=1, high=100)
    found = await request.app[SERVICE].runs(limit)
    return json_response({"runs": [run_json(r) for r in found]})


async def health(request: web.Request) -> web.Response:
    """Each dependency's health; always 200, since the page shows a down one, not fails."""
    _require_access(request)
    report = await request.app[SERVICES].health.check()
    return json_response(
        {
            "status": "healthy" if report.ok else "unhealthy",
            "now": request.app[CONTEXT].clock(),
            "components": [c.as_json() for c in report.components],
        }
    )


# --- the event stream -------------------------------------------------------------------------


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput("Last-Event-ID must be an event position (an integer)") from None
    if not 0 <= value <= MAX_POSITION:
        raise InvalidInput(f"Last-Event-ID must be between 0 and {MAX_POSITION}")
    return value


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a `change` per new event, `hello` first, `resync` when far behind."""
    _require_access(request)
    last_id = _last_event_id(request)
    context = request.app[CONTEXT]
    hub = request.app[HUB]
    subscription = await hub.subscribe()
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            }
        )
        await response.prepare(request)
        send: Callable[[bytes], Awaitable[None]] = response.write
        await send(f"retry: {RETRY_MILLISECONDS}\n\n".encode())
        sent = await _catch_up(send, context, last_id)
        await _stream(send, hub, subscription, sent)
    except ConnectionResetError:
        pass  # the page went away; it reconnects by itself if it wants more
    finally:
        hub.unsubscribe(subscription)
    return response


async def _catch_up(
    send: Callable[[bytes], Awaitable[None]], context: AppContext, last_id: int | None
) -> int:
    """Send what a reconnecting page missed; returns the position it now has."""
    if last_id is None:
        head = await context.store.head_position()
        await send(sse_message("hello", {"position": head}, head))
        return head
    missed = await context.store.read_all(last_id, CATCH_UP_LIMIT + 1)
    if len(missed) > CATCH_UP_LIMIT:
        head = await context.store.head_position()
        await send(sse_message("resync", {"position": head}, head))
        return head
    for event in missed:
        await send(Change.of(event).message())
    sent = missed[-1].position if missed else last_id
    await send(sse_message("hello", {"position": sent, "resumed": True}))
    return sent


async def _stream(
    send: Callable[[bytes], Awaitable[None]],
    hub: DashboardHub,
    subscription: Subscription,
    sent: int,
) -> None:
    while True:
        try:
            await asyncio.wait_for(subscription.wake.wait(), hub.heartbeat_seconds)
        except TimeoutError:
            await send(b": keepalive\n\n")
            continue
        subscription.wake.clear()
        while subscription.changes:
            change = subscription.changes.popleft()
            if change.position > sent:
                await send(change.message())
                sent = change.position
        if subscription.closed or subscription.overflowed:
            return  # the page reconnects with Last-Event-ID and catches up from the store
