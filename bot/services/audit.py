"""The audit trail of admin actions: ADMIN_ACTION_* events in the admin stream.

Every action a person takes on the cluster or the work (a restart, a reconcile, a log read, a
hold...) is recorded before it happens and again with its outcome, under one correlation id,
so that nothing is done unrecorded and each trail reads as one story. This module knows nothing
of Discord: finished actions go to an optional poster (the bot's audit channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from store import catalogue
from store.events import EventStore, NewEvent, RecordedEvent

log = logging.getLogger(__name__)

REQUESTED = "ADMIN_ACTION_REQUESTED"
CONFIRMED = "ADMIN_ACTION_CONFIRMED"
DENIED = "ADMIN_ACTION_DENIED"
CANCELLED = "ADMIN_ACTION_CANCELLED"
COMPLETED = "ADMIN_ACTION_COMPLETED"
FAILED = "ADMIN_ACTION_FAILED"
ADMIN_TYPES = (REQUESTED, CONFIRMED, DENIED, CANCELLED, COMPLETED, FAILED)
FINAL_TYPES = frozenset({DENIED, CANCELLED, COMPLETED, FAILED})

# The catalogue's limits (ShortText, LongText); longer text is cut rather than refused.
SHORT_TEXT = 1_000
LONG_TEXT = 8_000
POST_TIMEOUT = 10.0


@dataclass(frozen=True)
class AuditEntry:
    """One finished admin action, as the audit channel shows it."""

    event_type: str
    actor: str
    action: str
    target: str | None
    result: str | None
    correlation_id: str | None


AuditPoster = Callable[[AuditEntry], Awaitable[None]]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def new_correlation_id() -> str:
    """A short id that groups one action's records (and shows in Discord)."""
    return secrets.token_hex(6)


class AuditService:
    """Records admin actions in the admin stream and hands finished ones to the poster."""

    def __init__(
        self, store: EventStore, *, poster: AuditPoster | None = None, source: str = "discord"
    ) -> None:
        self.store = store
        self.poster = poster
        self.source = source
        self._posts: set[asyncio.Task[None]] = set()

    def begin(self, actor: str, action: str, target: str | None = None) -> AdminAction:
        """A new action by `actor` (e.g. "discord:123"); nothing is recorded until
        `requested()`."""
        return AdminAction(self, actor, action, target, new_correlation_id())

    async def recent(self, limit: int = 20) -> list[RecordedEvent]:
        """The latest admin records, newest first."""
        return await self.store.read_recent(limit, types=ADMIN_TYPES)

    async def trail(self, correlation_id: str, *, limit: int = 500) -> list[RecordedEvent]:
        """Every record of one action, oldest first (from the latest `limit` admin records)."""
        events = await self.store.read_recent(limit, types=ADMIN_TYPES)
        return [e for e in reversed(events) if e.data.get("correlationId") == correlation_id]

    async def record(
        self,
        event_type: str,
        actor: str,
        action: str,
        target: str | None,
        result: str | None,
        correlation_id: str | None,
    ) -> None:
        """Append one ADMIN_ACTION_* record (validated like every internal event)."""
        payload: dict[str, Any] = {"actor": _cut(actor, SHORT_TEXT), "action": _cut(action, 200)}
        if target is not None:
            payload["target"] = _cut(target, SHORT_TEXT)
        if result is not None:
            payload["result"] = _cut(result, LONG_TEXT)
        if correlation_id is not None:
            payload["correlationId"] = correlation_id
        data = catalogue.validate(event_type, payload, internal=True)
        metadata: dict[str, Any] = {"source": self.source, "actor": payload["actor"]}
        if correlation_id is not None:
            metadata["correlationId"] = correlation_id
        await self.store.append(catalogue.ADMIN_STREAM, [NewEvent(event_type, data, metadata)])

    def announce(self, entry: AuditEntry) -> None:
        """Hand a finished action to the poster, in the background (a slow channel never
        delays the person who ran the command); never raises."""
        if self.poster is None:
            return
        task = asyncio.create_task(self._post(entry), name="audit-post")
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def _post(self, entry: AuditEntry) -> None:
        assert self.poster is not None
        try:
            async with asyncio.timeout(POST_TIMEOUT):
                await self.poster(entry)
        except Exception as exc:  # the record is in the store; the channel is a courtesy
            log.warning(
                "audit: could not post %s of %s: %s", entry.event_type, entry.action, exc.__class__
            )

    async def drain(self, timeout: float = POST_TIMEOUT) -> None:  # noqa: ASYNC109
        """Wait for the posts under way (on shutdown), cancelling those that take too long."""
        pending = set(self._posts)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class AdminAction:
    """One admin action's trail; each method appends one record with the correlation id.

        REQUESTED → DENIED                       refused before anything was sent anywhere
        REQUESTED → CONFIRMED → COMPLETED|FAILED a confirmed mutation
        REQUESTED → CANCELLED                    the invoker said no, or the confirmation timed out
        REQUESTED → COMPLETED|FAILED             a read (status, pods, logs)

    (The permission layer's denials, of a caller who may not run the command at all, are a
    single DENIED, recorded by bot/permissions.py.) REQUESTED and CONFIRMED raise when they
    cannot be stored, so nothing is done; the outcome is written after the fact, and a failure
    to store it is logged, not raised: the action happened either way, and the person must
    still see its outcome.
    """

    def __init__(
        self, audit: AuditService, actor: str, action: str, target: str | None, correlation_id: str
    ) -> None:
        self.audit = audit
        self.actor = actor
        self.action = action
        self.target = target
        self.correlation_id = correlation_id
        self.outcome: str | None = None  # the final record's type, once there is one

    async def _record(self, event_type: str, result: str | None) -> None:
        await self.audit.record(
            event_type, self.actor, self.action, self.target, result, self.correlation_id
        )

    async def _finish(self, event_type: str, result: str) -> None:
        if self.outcome is not None:  # one outcome per action, whatever calls twice
            return
        self.outcome = event_type
        try:
            await self._record(event_type, result)
        except Exception:
            log.exception(
                "audit: could not record %s of %s (%s)",
                event_type,
                self.action,
                self.correlation_id,
            )
        self.audit.announce(
            AuditEntry(
                event_type, self.actor, self.action, self.target, result, self.correlation_id
            )
        )

    async def requested(self, detail: str | None = None) -> None:
        """Recorded before anything else happens; raises when it cannot be stored."""
        await self._record(REQUESTED, detail)

    async def confirmed(self, detail: str | None = None) -> None:
        """Recorded after the confirmation and before acting; raises when it cannot be stored."""
        await self._record(CONFIRMED, detail)

    async def denied(self, reason: str) -> None:
        await self._finish(DENIED, reason)

    async def cancelled(self, reason: str) -> None:
        await self._finish(CANCELLED, reason)

    async def completed(self, result: str) -> None:
        await self._finish(COMPLETED, result)

    async def failed(self, reason: str) -> None:
        await self._finish(FAILED, reason)
