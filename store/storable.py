"""What PostgreSQL's jsonb will take: checked before an append joins a batch.

Appends that arrive together share one `conductor_append_batch` call, so a value PostgreSQL
(or the driver, encoding it) refuses would fail every append of the batch. Each event's data
and metadata are checked here first, and refused alone as bad input.
"""

from __future__ import annotations

import math
from typing import Any

# Deeper than any event we know (a heartbeat's providers are four levels deep).
MAX_DEPTH = 32
# Integers longer than this are not counts, ids or amounts; Python itself refuses to read or
# write integers of more than 4,300 digits.
MAX_INT_DIGITS = 100
_INT_LIMIT = 10**MAX_INT_DIGITS


def unstorable(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first place in a JSON value jsonb cannot hold, as (path, reason); None when it can.

    Refused: NUL characters and lone UTF-16 surrogates in strings or keys, NaN and infinite
    floats, integers of more than MAX_INT_DIGITS digits, nesting deeper than MAX_DEPTH.
    """
    found = _check(value, 0)
    if found is None:
        return None
    keys, reason = found
    where = ".".join([path, *reversed(keys)] if path else reversed(keys))
    return (where or "body", reason)


def _check(value: Any, depth: int) -> tuple[list[str], str] | None:
    """(the keys leading to the problem, innermost first; why), or None. Every request body
    passes through here, so the path is only spelt out for a value that is refused."""
    if isinstance(value, str):
        reason = text_problem(value)
        return None if reason is None else ([], reason)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if abs(value) >= _INT_LIMIT:
            return ([], f"integers may have at most {MAX_INT_DIGITS} digits")
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return ([], "numbers must be finite (no NaN or Infinity)")
        return None
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            return ([], f"values may be nested at most {MAX_DEPTH} levels deep")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                reason = text_problem(key)
                if reason is not None:
                    return ([key], reason)
            found = _check(item, depth + 1)
            if found is not None:
                found[0].append(str(key))
                return found
    return None


def text_problem(text: str) -> str | None:
    """Why PostgreSQL would refuse this text, or None."""
    if "\x00" in text:
        return "text may not contain the NUL character (\\u0000)"
    if not text.isascii():  # only then can it hold a lone surrogate
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "text may not contain a lone UTF-16 surrogate (\\ud800-\\udfff)"
    return None
