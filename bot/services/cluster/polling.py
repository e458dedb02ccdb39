"""Following a change in the cluster until it settles: the one poll loop of rollouts and Flux.

A bounded poll, not a watch: the chart's Role grants `get` and `patch` on the allowed objects by
name and nothing else, and a poll that starts fast and backs off costs a handful of requests per
change (see `requests` in the results and bench/rollout.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from bot.integrations.kubernetes import ClusterUnavailable

log = logging.getLogger(__name__)

S = TypeVar("S")
E = TypeVar("E")


@dataclass(frozen=True)
class PollPolicy:
    """Poll fast at first (the first steps of a rollout come quickly), then back off."""

    initial: float = 0.25
    factor: float = 1.5
    maximum: float = 2.0

    def intervals(self) -> _Intervals:
        return _Intervals(self)


class _Intervals:
    def __init__(self, policy: PollPolicy) -> None:
        self.policy = policy
        self.current = policy.initial

    def next(self) -> float:
        value = self.current
        self.current = min(self.current * self.policy.factor, self.policy.maximum)
        return value


class RequestCount:
    """The Kubernetes requests one operation has sent, as its progress and result report."""

    def __init__(self) -> None:
        self.n = 0

    def add(self) -> None:
        self.n += 1


@dataclass(frozen=True)
class Followed(Generic[S]):
    """How a follow ended: `state` is the last one read; unless `settled`, the deadline passed
    first, and `lost` says why the last poll failed when it did."""

    state: S
    settled: bool
    lost: str | None = None


async def follow(
    fetch: Callable[[], Awaitable[S]],
    judge: Callable[[S], Awaitable[str | None]],
    waiting: Callable[[str, S], Awaitable[None]],
    *,
    current: S,
    deadline: float,
    policy: PollPolicy,
    requests: RequestCount,
) -> Followed[S]:
    """Read the state anew at `policy`'s intervals until `judge` settles it or `deadline` (the
    loop's clock) passes.

    `judge` returns what the state still waits for, or None once it has settled; it reports a
    settled state and raises for a failed one itself. `waiting` hears each new waiting message.
    """
    loop = asyncio.get_running_loop()
    last_message = ""
    lost: str | None = None
    intervals = policy.intervals()
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(remaining):
                await asyncio.sleep(intervals.next())
                requests.add()
                current = await fetch()
        except TimeoutError:
            break
        except ClusterUnavailable as exc:
            # The change is under way; a blip while following it is not its failure.
            lost = exc.message
            continue
        lost = None
        message = await judge(current)
        if message is None:
            return Followed(current, settled=True)
        if message != last_message:
            last_message = message
            await waiting(message, current)
    return Followed(current, settled=False, lost=lost)


async def call_safely(callback: Callable[[E], Awaitable[None]], event: E) -> None:
    # A failing progress display (a Discord edit that errors) must not abandon a change that
    # has already started; it is logged and the following goes on.
    try:
        await callback(event)
    except Exception as exc:
        log.warning("progress callback failed: %s", type(exc).__name__)
