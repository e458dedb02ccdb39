"""What each long-running component knows about its upstream: up, down (retrying) or stopped.

The bot reports Discord, the coordination loop GitHub and Anthropic; deep health and /metrics
read these states. Each change is logged once, the retries in between stay silent, and a
credential the upstream rejects stops only its component.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from bot.backoff import jittered

log = logging.getLogger("conductor_e")

Status = Literal["up", "down", "stopped"]

DISCORD = "discord"
GITHUB = "github"
ANTHROPIC = "anthropic"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# The wait between a component's retries; its callers know it by this name.
retry_delay = jittered


@dataclass(frozen=True)
class ComponentState:
    """One component's view of its upstream. `error` is the last error's class (down) or why
    it stopped; `since` is when the status last changed; `failures` counts the attempts that
    failed since it went down."""

    name: str
    status: Status
    since: datetime
    error: str | None = None
    failures: int = 0


class ComponentStates:
    """The process's component states; one per process, held by the AppContext."""

    def __init__(self, clock: Callable[[], datetime] = _utcnow) -> None:
        self._clock = clock
        self._states: dict[str, ComponentState] = {}

    def get(self, name: str) -> ComponentState | None:
        return self._states.get(name)

    def all(self) -> list[ComponentState]:
        return [self._states[name] for name in sorted(self._states)]

    def is_down(self, name: str) -> bool:
        state = self._states.get(name)
        return state is not None and state.status == "down"

    def is_stopped(self, name: str) -> bool:
        state = self._states.get(name)
        return state is not None and state.status == "stopped"

    def up(self, name: str) -> None:
        """The upstream answered. Logged when that is news: first contact, or after an outage."""
        before = self._states.get(name)
        if before is not None and before.status in ("up", "stopped"):
            return  # a stopped component stays stopped until the process restarts
        now = self._clock()
        self._states[name] = ComponentState(name, "up", now)
        if before is None:
            log.info("%s: up", name)
        elif before.status == "down":
            seconds = (now - before.since).total_seconds()
            log.warning(
                "%s: up again after %.0fs down (%d failed attempt%s)",
                name,
                seconds,
                before.failures,
                "" if before.failures == 1 else "s",
            )

    def down(self, name: str, error: BaseException | str) -> None:
        """The upstream could not be reached (or failed on its side); the component retries.
        Logged once, when it goes down; each further failure only counts."""
        what = error if isinstance(error, str) else type(error).__name__
        before = self._states.get(name)
        if before is not None and before.status == "stopped":
            return
        if before is not None and before.status == "down":
            self._states[name] = replace(before, error=what, failures=before.failures + 1)
            return
        self._states[name] = ComponentState(name, "down", self._clock(), what, 1)
        log.warning("%s: down: %s; retrying with backoff until it answers", name, what)

    def stopped(self, name: str, reason: str) -> None:
        """The component gave up for good (a rejected credential): one error line, naming the
        setting to fix. It stays stopped until the process restarts."""
        if self.is_stopped(name):
            return
        self._states[name] = ComponentState(name, "stopped", self._clock(), reason)
        log.error("%s: stopped: %s", name, reason)


def rejected(setting: str, upstream: str, how: str = "401") -> str:
    """The one line for a credential the upstream refused."""
    return (
        f"{upstream} rejected {setting} ({how}); fix the setting and restart Conductor-E "
        "(the rest keeps running)"
    )
