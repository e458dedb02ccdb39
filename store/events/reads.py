"""Reading events: one stream, everything after a position, the latest, the head."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from store.errors import unavailable_on_connection_loss
from store.events.records import RecordedEvent, field_names, from_row

EVENT_COLUMNS = ", ".join(field_names(RecordedEvent))


def _event(row: asyncpg.Record) -> RecordedEvent:
    return from_row(RecordedEvent, row)


class EventReader:
    """The reads of the event store (EventStore adds the writes)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def read_stream(self, stream_id: str, *, limit: int = 10_000) -> list[RecordedEvent]:
        """One stream's events, oldest first."""
        with unavailable_on_connection_loss():
            rows = await self.pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 "
                "ORDER BY version LIMIT $2",
                stream_id,
                limit,
            )
        return [_event(row) for row in rows]

    async def read_version(self, stream_id: str, version: int) -> RecordedEvent | None:
        """One event of a stream by its version, or None."""
        with unavailable_on_connection_loss():
            row = await self.pool.fetchrow(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version = $2",
                stream_id,
                version,
            )
        return _event(row) if row is not None else None

    async def read_all(
        self,
        after_position: int = 0,
        limit: int = 1_000,
        *,
        types: Sequence[str] | None = None,
    ) -> list[RecordedEvent]:
        """Events after a global position, in order; optionally only some types."""
        with unavailable_on_connection_loss():
            if types:
                rows = await self.pool.fetch(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 "
                    "AND type = ANY($3::text[]) ORDER BY position LIMIT $2",
                    after_position,
                    limit,
                    list(types),
                )
            else:
                rows = await self.pool.fetch(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 "
                    "ORDER BY position LIMIT $2",
                    after_position,
                    limit,
                )
        return [_event(row) for row in rows]

    async def read_recent(
        self, limit: int = 20, *, types: Sequence[str] | None = None
    ) -> list[RecordedEvent]:
        """The latest events, newest first."""
        with unavailable_on_connection_loss():
            rows = await self.pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events "
                "WHERE ($2::text[] IS NULL OR type = ANY($2::text[])) "
                "ORDER BY position DESC LIMIT $1",
                limit,
                list(types) if types else None,
            )
        return [_event(row) for row in rows]

    async def head_position(self) -> int:
        """The position of the newest event (0 for an empty store)."""
        with unavailable_on_connection_loss():
            value = await self.pool.fetchval("SELECT coalesce(max(position), 0) FROM events")
        return int(value)
