"""Live updates for the dashboard: GET /dashboard/events, server-sent events.

Each new event reaches every open page as a small `change` naming the data it touches, and the
page re-fetches those, so one store follower per process serves any number of pages. A
message's SSE id is the event's position, so a page that reconnects is sent what it missed; a
comment every 15 seconds keeps proxies from closing an idle stream and notices a page gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.context import AppContext
from bot.errors import InvalidInput
from bot.web.dashboard.access import require_access
from bot.web.keys import CONTEXT
from store import catalogue
from store.events import EventFollower, RecordedEvent

log = logging.getLogger(__name__)

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


HUB = web.AppKey("dashboard_hub", DashboardHub)


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
    require_access(request)
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
