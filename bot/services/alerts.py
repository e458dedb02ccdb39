"""Live alerts: which events are worth a message in which channel, and delivering them.

People learn of assignments, stuck work, failures and budgets in Discord without asking, so an
alert may be neither lost nor doubled: `AlertService` follows the store from the last delivered
position, retries an alert until it is posted (later ones wait behind it, never skipping it),
and Discord keeps one message per nonce, so a crash between a post and its saved position never
posts twice. A loop that keeps failing the same way is said once, not every run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.backoff import exponential
from bot.context import AppContext
from store.events import EventFollower, RecordedEvent

log = logging.getLogger(__name__)

POSITION_KEY = "discord.alerts.position"
NONCE_PREFIX = "ce-alert-"  # a Discord nonce is at most 25 characters
MESSAGE_LIMIT = 2_000
THREAD_NAME_LIMIT = 100
# Without an alert, the position is saved at most this often (replaying a few non-alert
# events after a restart costs nothing).
SAVE_EVERY_EVENTS = 200
SAVE_EVERY_SECONDS = 5.0

ADMIN_TYPES = frozenset(
    {
        "ESCALATED",
        "AGENT_STUCK",
        "CI_FAILED",
        "SMOKE_FAILED",
        "E2E_FAILED",
        "COORDINATION_RUN_FAILED",
        "BUDGET_THRESHOLD_CROSSED",
        "MERGE_BLOCKED",
    }
)
TASK_TYPES = frozenset({"ISSUE_ASSIGNED"})
RUN_FAILED, RUN_COMPLETED = "COORDINATION_RUN_FAILED", "COORDINATION_RUN_COMPLETED"


@dataclass(frozen=True)
class Alert:
    position: int
    event_type: str
    channel_id: int
    text: str
    thread_name: str | None = None

    @property
    def nonce(self) -> str:
        """From the event's position: a re-post after a crash carries the same nonce, and
        Discord (`enforce_nonce`) keeps one message."""
        return f"{NONCE_PREFIX}{self.position}"


Poster = Callable[[Alert], Awaitable[None]]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _ref(data: dict[str, object]) -> str | None:
    repo, number = data.get("repo"), data.get("issueNumber")
    if repo and number:
        return f"{repo}#{number}"
    return None


def _sanitise(text: object) -> str:
    # Alerts are posted without mentions; this keeps the text from even looking like one.
    return str(text).replace("@", "@\u200b")


def alert_for(
    event: RecordedEvent,
    *,
    tasks_channel_id: int | None,
    admin_channel_id: int | None,
    threads: bool = True,
    title: str | None = None,
    previous_run: RecordedEvent | None = None,
) -> Alert | None:
    """The alert an event calls for, or None (not alert-worthy, or its channel is not set).

    For a coordination run, `previous_run` is the run recorded before it (None: the first)."""
    data = event.data
    ref = _ref(data)
    where = f" on `{ref}`" if ref else ""
    if event.type in TASK_TYPES and tasks_channel_id is not None:
        agent = _sanitise(data.get("agentId", "an agent"))
        named = f" — {_sanitise(title)}" if title else ""
        text = f"📋 `{ref}`{named} was assigned to **{agent}**."
        thread = _cut(f"{ref} {title or ''}".strip(), THREAD_NAME_LIMIT) if threads else None
        return Alert(
            event.position, event.type, tasks_channel_id, _cut(text, MESSAGE_LIMIT), thread
        )
    if admin_channel_id is None:
        return None
    # What the run before failed with; None when it did not fail (or there was none).
    failed_before = (
        previous_run.data if previous_run is not None and previous_run.type == RUN_FAILED else None
    )
    if event.type == RUN_COMPLETED:
        if failed_before is None:
            return None
        text = "✅ Coordination runs complete again."
        return Alert(event.position, event.type, admin_channel_id, text)
    if event.type not in ADMIN_TYPES:
        return None
    if failed_before is not None and failed_before.get("error") == data.get("error"):
        return None  # the same failure as the run before: already said
    reason = data.get("reason") or data.get("details") or data.get("error") or data.get("result")
    because = f": {_sanitise(reason)}" if reason else "."
    if event.type == "ESCALATED":
        text = f"🚨 `{ref}` was escalated{because}"
    elif event.type == "AGENT_STUCK":
        text = f"⚠️ Agent **{_sanitise(data.get('agentId'))}** is stuck{where}{because}"
    elif event.type == "CI_FAILED":
        pr = f" (PR #{data['prNumber']})" if data.get("prNumber") else ""
        text = f"❌ CI failed{where}{pr}{because}"
    elif event.type in ("SMOKE_FAILED", "E2E_FAILED"):
        kind = "Smoke tests" if event.type == "SMOKE_FAILED" else "End-to-end tests"
        env = f" in {_sanitise(data['environment'])}" if data.get("environment") else ""
        text = f"❌ {kind} failed{where}{env}{because}"
    elif event.type == "MERGE_BLOCKED":
        text = (
            f"⛔ GitHub refused to merge PR #{data.get('prNumber')}{where} "
            f"(head `{str(data.get('headSha'))[:7]}`, {data.get('status')}){because}"
        )
    elif event.type == RUN_FAILED:
        text = f"❌ A coordination run failed{because}"
    else:  # BUDGET_THRESHOLD_CROSSED
        text = (
            f"💸 Agent **{_sanitise(data.get('agentId'))}** crossed "
            f"{data.get('threshold')}% of its daily budget "
            f"(${float(data.get('spent', 0)):.2f} of ${float(data.get('budget', 0)):.2f})."
        )
    return Alert(event.position, event.type, admin_channel_id, _cut(text, MESSAGE_LIMIT))


class AlertService:
    """Follows the store and delivers every alert once, in order."""

    def __init__(
        self,
        context: AppContext,
        poster: Poster,
        *,
        threads: bool = True,
        retry_delay: float = 1.0,
        max_retry_delay: float = 60.0,
    ) -> None:
        self.context = context
        self.poster = poster
        self.threads = threads
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.delivered = 0

    @property
    def enabled(self) -> bool:
        settings = self.context.settings
        return settings.tasks_channel_id is not None or settings.admin_channel_id is not None

    async def start_position(self) -> int:
        """The last handled position; on the first start, the head of the store, rather than
        replaying history into the channels."""
        stored = await self.context.state.get(POSITION_KEY)
        if stored is not None:
            return int(stored)
        head = await self.context.store.head_position()
        await self.context.state.advance_position(POSITION_KEY, head)
        log.info("alerts: first start; following new events after position %d", head)
        return head

    async def run(self) -> None:
        """Deliver alerts until cancelled."""
        position = await self.start_position()
        follower = EventFollower(self.context.store, self.context.dsn, after_position=position)
        unsaved = 0
        saved_at = time.monotonic()
        async for event in follower:
            alert = await self.alert_for(event)
            if alert is not None:
                await self.deliver(alert)
            unsaved += 1
            if (
                alert is not None
                or unsaved >= SAVE_EVERY_EVENTS
                or time.monotonic() - saved_at > SAVE_EVERY_SECONDS
            ):
                await self.context.state.advance_position(POSITION_KEY, event.position)
                unsaved, saved_at = 0, time.monotonic()

    async def alert_for(self, event: RecordedEvent) -> Alert | None:
        """The alert for `event`. A coordination run is judged against the run recorded before
        it, read from the store, so that a failure said once stays said across restarts: a
        failed run is posted when the one before succeeded or failed differently, and the first
        run that completes after failures says the loop has recovered."""
        settings = self.context.settings
        title = None
        previous_run = None
        if event.type in TASK_TYPES:
            ref = _ref(event.data)
            issue = await self.context.projections.issue(ref) if ref else None
            title = issue.title if issue is not None else None
        elif event.type in (RUN_FAILED, RUN_COMPLETED) and settings.admin_channel_id is not None:
            previous_run = await self.context.store.read_version(event.stream_id, event.version - 1)
        return alert_for(
            event,
            tasks_channel_id=settings.tasks_channel_id,
            admin_channel_id=settings.admin_channel_id,
            threads=self.threads,
            title=title,
            previous_run=previous_run,
        )

    async def deliver(self, alert: Alert) -> None:
        """Post one alert, retrying with backoff until it is posted."""
        attempt = 1
        while True:
            try:
                await self.poster(alert)
            except Exception as exc:
                delay = exponential(attempt - 1, base=self.retry_delay, cap=self.max_retry_delay)
                log.warning(
                    "alerts: posting %s (position %d) failed (attempt %d: %s); retrying in %.1fs",
                    alert.event_type,
                    alert.position,
                    attempt,
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                attempt += 1
                continue
            self.delivered += 1
            return
