"""Push dispatch: hand each routed issue to its agent's Valkey stream the moment it exists.

The agents read a Valkey stream rather than poll, so work is pushed, in the shape of
pyeventsourcing's process application: the claim (the pull path's own exclusive event) and an
outbox row commit together, then the row is written to the stream idempotently. A crash, an
outage or a restart delays an assignment but never loses or doubles it. The README's "Push
dispatch" has the rules an operator sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from bot.context import AppContext
from bot.integrations.valkey import Unacked, ValkeyClient, ValkeyUnavailable, describe_url
from bot.services.health.components import retry_delay
from bot.services.work.routing import REVIEW_ROUTE, Router
from store.dispatch import Outbox, OutboxEntry
from store.errors import DatabaseUnavailableError
from store.events import EventFollower

log = logging.getLogger(__name__)

VALKEY = "valkey"
METADATA = {"source": "dispatch", "actor": "conductor-e"}
TICK_SECONDS = 1.0
# Events that never change what can be dispatched: they do not wake the dispatcher.
_QUIET = frozenset({"HEARTBEAT", "TOKEN_USAGE"})


@dataclass(frozen=True)
class TickResult:
    sent: int  # outbox rows written to a stream in this tick
    claimed: int  # new assignments claimed in this tick


@dataclass(frozen=True)
class DispatchStats:
    """For /metrics: assignments written to streams, waiting in the outbox, unacknowledged in
    the streams (as of the last tick), and how long the oldest outbox row has waited."""

    dispatched: int
    outbox: int
    unacked: int
    lag_seconds: float


@dataclass(frozen=True)
class AgentLoad:
    """An agent's stream as the dispatcher sees it (for /metrics and stuck detection)."""

    agent_id: str
    unacked: list[Unacked]


class DispatchService:
    """Claims work for the agents routing names and writes it to their streams."""

    def __init__(self, context: AppContext, valkey: ValkeyClient) -> None:
        self.context = context
        self.valkey = valkey
        self.outbox = Outbox(context.pool)
        self.router = Router.from_settings(context.settings)
        self.depth = context.settings.dispatch_depth
        self.loads: dict[str, AgentLoad] = {}

    async def targets(self) -> dict[str, set[str]]:
        """Each agent routing names, with the claim kinds it takes (`issue`, `review`).

        Heartbeats are not asked: an agent scaled to zero sends none, and the wake signal starts
        it. Issues routed to any agent name nobody here, and stay for the pull path."""
        settings = self.context.settings
        keys = {c.route_key for c in await self.context.projections.repo_configs() if c.route_key}
        keys |= set(settings.agent_routes)
        if settings.default_stack:
            keys.add(settings.default_stack)
        keys.discard(REVIEW_ROUTE)
        targets: dict[str, set[str]] = {}
        for key in sorted(keys):
            for agent in self.router.agents_for(key):
                targets.setdefault(agent, set()).add("issue")
        for agent in self.router.agents_for(REVIEW_ROUTE):
            targets.setdefault(agent, set()).add("review")
        return targets

    async def send(self, entry: OutboxEntry) -> None:
        """Write one outbox row to its agent's stream (once) and mark it sent."""
        pushed = await self.valkey.push(entry.agent_id, entry.token, entry.fields)
        if not pushed.written:
            log.info("dispatch: %s was already in %s's stream", entry.stream_id, entry.agent_id)
        await self.outbox.mark_sent(entry.assignment_id, pushed.entry_id)

    async def tick(self) -> TickResult:
        """Send what the outbox holds, then fill each agent up to its depth.

        The depth bounds an agent's unacknowledged entries, so its next issue is claimed only
        once it acknowledges one: the best issue at that moment, and priority survives."""
        sent = claimed = 0
        for waiting in await self.outbox.unsent():
            if await self._still_held(waiting):
                await self.send(waiting)
                sent += 1
            else:
                await self.outbox.cancel(waiting.assignment_id)
                log.info(
                    "dispatch: %s left %s before it was written; not sent",
                    waiting.stream_id,
                    waiting.agent_id,
                )
        loads: dict[str, AgentLoad] = {}
        for agent_id, kinds in sorted((await self.targets()).items()):
            unacked = await self.valkey.unacked(agent_id)
            held = len(unacked)
            for kind in sorted(kinds):  # "issue" before "review"
                while held < self.depth:
                    entry = await self._claim(kind, agent_id)
                    if entry is None:
                        break
                    await self.send(entry)
                    sent += 1
                    claimed += 1
                    held += 1
                    log.info("dispatch: %s → %s", entry.stream_id, agent_id)
            if held != len(unacked):
                unacked = await self.valkey.unacked(agent_id)
            loads[agent_id] = AgentLoad(agent_id, unacked)
        self.loads = loads
        return TickResult(sent, claimed)

    async def _still_held(self, entry: OutboxEntry) -> bool:
        """Whether an unsent row's issue is still the agent's (a long outage may outlast the
        stuck window, and stuck detection then gave the issue back to the queue)."""
        issue = await self.context.projections.issue(entry.stream_id)
        if issue is None:
            return False
        if entry.kind == "review":
            return issue.state == "in_review" and issue.reviewer == entry.agent_id
        return issue.state in ("assigned", "in_progress") and issue.assignee == entry.agent_id

    async def _claim(self, kind: str, agent_id: str) -> OutboxEntry | None:
        if kind == "review":
            return await self.outbox.claim(kind, agent_id, METADATA, route_keys=None, unrouted=True)
        scope = self.router.scope(agent_id)
        return await self.outbox.claim(
            kind, agent_id, METADATA, route_keys=scope.keys, unrouted=scope.unrouted
        )

    async def stats(self) -> DispatchStats:
        outbox = await self.outbox.stats()
        lag = 0.0
        if outbox.oldest_unsent is not None:
            lag = max(0.0, (self.context.clock() - outbox.oldest_unsent).total_seconds())
        unacked = sum(len(load.unacked) for load in self.loads.values())
        return DispatchStats(outbox.sent, outbox.unsent, unacked, lag)

    def not_picked_up(self, window: timedelta) -> list[tuple[str, Unacked]]:
        """Entries unacknowledged for longer than `window`, as of the last tick: written but
        never read (the agent never woke) or read and never acknowledged."""
        limit = window.total_seconds()
        return [
            (load.agent_id, entry)
            for load in self.loads.values()
            for entry in load.unacked
            if entry.idle_seconds > limit
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every second and whenever an event lands, until `stop`. Valkey or PostgreSQL
        down: the component state says so and the ticks back off; nothing is lost meanwhile
        (the claim happens only after a successful look at the agent's stream)."""
        components = self.context.components
        retry_max = self.context.settings.retry_max_seconds
        wake = asyncio.Event()
        follower_task = asyncio.create_task(self._follow(wake), name="dispatch-follower")
        failures = 0
        lead = None
        try:
            while not stop.is_set():
                wake.clear()
                delay = TICK_SECONDS
                try:
                    if lead is not None and lead.is_closed():
                        await self.outbox.step_down(lead)
                        lead = None
                    if lead is None:
                        lead = await self.outbox.try_lead()
                    if lead is None:
                        # Another replica dispatches; this one takes over if that one dies.
                        await _wait(stop, wake, TICK_SECONDS)
                        continue
                    await self.tick()
                    components.up(VALKEY)
                    failures = 0
                except ValkeyUnavailable as exc:
                    components.down(VALKEY, str(exc))
                    delay = retry_delay(failures, retry_max)
                    failures += 1
                except DatabaseUnavailableError as exc:
                    log.warning("dispatch: %s; retrying", exc)
                    delay = retry_delay(failures, retry_max)
                    failures += 1
                except Exception:
                    # A bug or an unexpected database error must not end push dispatch for
                    # good: say it, back off, try again (the outbox keeps what is owed).
                    log.exception("dispatch: a tick failed; retrying")
                    delay = retry_delay(failures, retry_max)
                    failures += 1
                await _wait(stop, wake if failures == 0 else None, delay)
        finally:
            if lead is not None:
                with contextlib.suppress(Exception):
                    await self.outbox.step_down(lead)
            follower_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower_task

    async def _follow(self, wake: asyncio.Event) -> None:
        """Wake the dispatcher when an event lands (LISTEN/NOTIFY with catch-up)."""
        while True:
            try:
                start = await self.context.store.head_position()
            except DatabaseUnavailableError:
                await asyncio.sleep(TICK_SECONDS)  # the ticks go on meanwhile
                continue
            follower = EventFollower(self.context.store, self.context.dsn, after_position=start)
            async for event in follower:
                if event.type not in _QUIET:
                    wake.set()


async def _wait(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> None:
    """Until `stop`, `wake` (when given) or `seconds` pass, whichever comes first."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    _, pending = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()


@contextlib.asynccontextmanager
async def open_dispatcher(context: AppContext) -> AsyncIterator[DispatchService]:
    """The push dispatcher and its Valkey client (CONDUCTOR_VALKEY_URL is set)."""
    settings = context.settings
    assert settings.valkey_url is not None
    url = settings.valkey_url.get_secret_value()
    password = settings.valkey_password.get_secret_value() if settings.valkey_password else None
    valkey = ValkeyClient(url, password)
    log.info("dispatch: pushing to %s (depth %d)", describe_url(url), settings.dispatch_depth)
    try:
        yield DispatchService(context, valkey)
    finally:
        await valkey.close()
