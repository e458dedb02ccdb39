"""Waiting in tests: on a condition, with a timeout, never on the wall clock alone.

`wait_until` checks a condition (a plain function or a coroutine function) until it holds and
returns the value it gave; past the timeout it fails with an AssertionError that names what was
awaited and shows the last value seen. `wait_until_blocking` is its twin for the synchronous
tests that drive a subprocess with blocking I/O.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_NOTHING: Any = object()  # no check has finished yet


async def wait_until(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout: float,
    what: str,
    ok: Callable[[T], object] = bool,
    interval: float = 0.02,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call `condition` every `interval` seconds until `ok` holds for what it returns (by
    default: until it returns something truthy), and return that value.

    After `timeout` seconds, a check under way included, fail with an AssertionError naming
    `what`, with the last value seen and `detail()` (a log's tail, say) when given. What the
    condition raises goes through unchanged."""
    last: Any = _NOTHING
    try:
        async with asyncio.timeout(timeout) as deadline:
            while True:
                value = condition()
                if inspect.isawaitable(value):
                    value = await value
                last = value
                if ok(value):
                    return value
                await asyncio.sleep(interval)
    except TimeoutError:
        if not deadline.expired():
            raise  # the condition's own, not the deadline's
        raise AssertionError(_timed_out(what, timeout, last, detail)) from None


def wait_until_blocking(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str,
    ok: Callable[[T], object] = bool,
    interval: float = 0.02,
    detail: Callable[[], str] | None = None,
) -> T:
    """`wait_until` for synchronous tests: the same checks and failure, sleeping the thread
    between checks."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if ok(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(what, timeout, value, detail))
        time.sleep(interval)


def _timed_out(what: str, timeout: float, last: Any, detail: Callable[[], str] | None) -> str:
    seen = "no check finished" if last is _NOTHING else f"last seen: {last!r}"
    message = f"timed out after {timeout}s waiting for {what}; {seen}"
    return f"{message}\n{detail()}" if detail is not None else message
