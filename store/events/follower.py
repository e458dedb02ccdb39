"""Following the store live: every event after a position, in order, as it is appended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from store.database import connect
from store.errors import DatabaseUnavailableError
from store.events.reads import EventReader
from store.events.records import RecordedEvent

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "conductor_events"  # conductor_append's pg_notify


class EventFollower:
    """Yields every event after a position, in order, as it is appended.

    LISTEN/NOTIFY wakes it promptly; catch-up by position means a notification lost to a
    dropped connection loses nothing: after reconnecting it reads whatever it missed.
    """

    def __init__(
        self,
        store: EventReader,
        dsn: str,
        *,
        after_position: int = 0,
        batch_size: int = 500,
        poll_interval: float = 5.0,
        reconnect_delay: float = 1.0,
    ) -> None:
        self.store = store
        self.dsn = dsn
        self.position = after_position
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.reconnect_delay = reconnect_delay
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    def _connection_lost(self, *_: Any) -> None:
        self._wake.set()

    async def _ensure_listening(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        self._conn = await connect(self.dsn)
        self._conn.add_termination_listener(self._connection_lost)
        await self._conn.add_listener(NOTIFY_CHANNEL, self._notified)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        try:
            while True:
                try:
                    await self._ensure_listening()
                    # Clear before reading: a notify that lands during the read wakes us again.
                    self._wake.clear()
                    batch = await self.store.read_all(self.position, self.batch_size)
                except (DatabaseUnavailableError, OSError, asyncpg.PostgresError) as exc:
                    log.warning("event follower: %s; retrying in %.1fs", exc, self.reconnect_delay)
                    await self.close()
                    await asyncio.sleep(self.reconnect_delay)
                    continue
                for event in batch:
                    self.position = event.position
                    yield event
                if len(batch) == self.batch_size:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            await self.close()
