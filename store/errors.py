"""The store's domain errors. The API and the bot map these to user-facing messages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg


class StoreError(Exception):
    """Base class of everything the store raises on purpose."""


class ConcurrencyError(StoreError):
    """An append's expected version did not match the stream's version; nothing was stored."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id} is at version {actual}, not the expected {expected}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class EventValidationError(StoreError):
    """An event's type is unknown or its payload breaks the type's schema."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer Conductor-E than this one."""


class DatabaseUnavailableError(StoreError):
    """PostgreSQL could not be reached (or dropped the connection mid-request)."""


class Refused(StoreError):
    """The store refused a guarded write (e.g. assigning a held issue); nothing was stored."""


# What a lost (or never made) connection raises, in the driver and below it.
CONNECTION_ERRORS = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
)


@contextlib.contextmanager
def unavailable_on_connection_loss() -> Iterator[None]:
    """Raise DatabaseUnavailableError for a lost connection inside the block."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(f"PostgreSQL is unavailable: {type(exc).__name__}") from exc
