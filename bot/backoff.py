"""Capped exponential backoff: the one formula behind every retry wait of Conductor-E.

Neutral ground: integrations and services both use it, and it imports nothing of either.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# 2**32 base units is past any cap; clamping the exponent keeps a long outage from overflowing.
_MAX_DOUBLINGS = 32


def exponential(retry: int, *, base: float = 1.0, cap: float) -> float:
    """`base` doubled per retry (retry 0 waits `base`), never more than `cap`."""
    return float(min(cap, base * 2.0 ** min(retry, _MAX_DOUBLINGS)))


def jittered(
    retry: int, cap: float, *, base: float = 1.0, rand: Callable[[], float] = random.random
) -> float:
    """`exponential` with jitter: between half and all of it, so that several processes that lost
    the same upstream do not retry in step."""
    return exponential(retry, base=base, cap=cap) * (0.5 + rand() / 2)
