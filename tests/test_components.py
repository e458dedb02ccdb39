"""Component states: one log line per state change, a rejected credential stops for good, and
the backoff between retries grows, is capped and jittered."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.services.health.components import ComponentStates, retry_delay


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_each_state_change_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    states = ComponentStates(clock)
    caplog.set_level(logging.INFO, logger="conductor_e")

    states.up("discord")
    states.up("discord")
    for _ in range(5):
        states.down("discord", ConnectionRefusedError())
        clock.now += timedelta(seconds=10)
    states.down("discord", TimeoutError())
    states.up("discord")
    states.up("discord")

    assert [r.getMessage() for r in caplog.records] == [
        "discord: up",
        "discord: down: ConnectionRefusedError; retrying with backoff until it answers",
        "discord: up again after 50s down (6 failed attempts)",
    ]
    state = states.get("discord")
    assert state is not None and state.status == "up" and state.since == clock.now


def test_a_stopped_component_stays_stopped(caplog: pytest.LogCaptureFixture) -> None:
    states = ComponentStates(Clock())
    states.down("github", "GitHubUnavailable")
    states.stopped("github", "GitHub rejected GITHUB_TOKEN (401)")
    states.stopped("github", "again")
    states.down("github", "GitHubUnavailable")
    states.up("github")

    state = states.get("github")
    assert state is not None and state.status == "stopped"
    assert state.error == "GitHub rejected GITHUB_TOKEN (401)"
    assert states.is_stopped("github") and not states.is_down("github")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "github: stopped: GitHub rejected GITHUB_TOKEN (401)"
    ]


def test_the_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    ceilings = [retry_delay(n, 60.0, rand=lambda: 1.0) for n in range(9)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    floors = [retry_delay(n, 60.0, rand=lambda: 0.0) for n in range(9)]
    assert floors == [c / 2 for c in ceilings]
    assert retry_delay(10_000, 0.5, rand=lambda: 1.0) == 0.5  # no overflow, still capped
    assert len({retry_delay(3, 60.0) for _ in range(20)}) > 1  # jittered
