"""Errors a person (or an agent) may see, and the one mapping from domain errors to them.

Services raise these (or store errors); the HTTP middleware and the Discord tree's on_error turn
them into `{"error": code, "message": ...}` / an ephemeral reply. Anything else is unexpected:
logged with a reference id, and shown only as "internal error (ref …)".
"""

from __future__ import annotations

import secrets

from store.errors import (
    ConcurrencyError,
    DatabaseUnavailableError,
    EventValidationError,
    SchemaTooNewError,
)


class UserFacingError(Exception):
    """An error whose message is safe and useful to show as it is."""

    code = "error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(UserFacingError):
    code = "invalid_request"
    status = 400


class Unauthorized(UserFacingError):
    code = "unauthorized"
    status = 401


class Forbidden(UserFacingError):
    code = "forbidden"
    status = 403


class NotFound(UserFacingError):
    code = "not_found"
    status = 404


class Conflict(UserFacingError):
    code = "conflict"
    status = 409


class Unprocessable(UserFacingError):
    """Well-formed, but contradicts what was stored (an idempotency key reused for another
    body)."""

    code = "unprocessable"
    status = 422


class Unavailable(UserFacingError):
    code = "unavailable"
    status = 503


class UpstreamError(UserFacingError):
    """GitHub, Kubernetes, Anthropic or Discord failed in a way worth telling the user."""

    code = "upstream_error"
    status = 502


def quoted(value: object, limit: int = 100) -> str:
    """A value as it was given, for an error message: repr'd first, then cut (escaped control
    characters and emoji would otherwise grow a cut string several times over)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_user_facing(exc: BaseException) -> UserFacingError | None:
    """The user-facing form of a known error, or None for an unexpected one."""
    if isinstance(exc, UserFacingError):
        return exc
    if isinstance(exc, EventValidationError):
        return InvalidInput(str(exc))
    if isinstance(exc, ConcurrencyError):
        return Conflict(str(exc))
    if isinstance(exc, DatabaseUnavailableError | SchemaTooNewError):
        return Unavailable(str(exc))
    return None


def reference_id() -> str:
    """A short id that ties an error reply to its log line."""
    return secrets.token_hex(4)


# The HTTP layer's own refusals (bot/web/guard.py): a body too large, too slow, not JSON.
class PayloadTooLarge(UserFacingError):
    code = "payload_too_large"
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body exceeds {_size(limit)}")


class RequestTimeout(UserFacingError):
    code = "request_timeout"
    status = 408


class UnsupportedMediaType(UserFacingError):
    code = "unsupported_media_type"
    status = 415


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit // 1024} KiB"
