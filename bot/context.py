"""What the composition root builds once and hands to every part: settings, pool, store, HTTP.

No part builds its own pool or session; `bot.__main__` makes an AppContext and passes it on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg

from bot.integrations.github import GitHubClient
from bot.settings import Settings
from store.events import EventStore
from store.projections import Projections
from store.state import AppState


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppContext:
    settings: Settings
    dsn: str
    pool: asyncpg.Pool
    http: aiohttp.ClientSession
    store: EventStore
    projections: Projections
    state: AppState
    clock: Callable[[], datetime] = field(default=utcnow)
    # The process's one GitHub client (one ETag cache), when GITHUB_TOKEN is set.
    github: GitHubClient | None = None

    @property
    def stale_after(self) -> timedelta:
        """An agent is stale after three missed heartbeat intervals."""
        return timedelta(seconds=3 * self.settings.heartbeat_interval_seconds)

    @classmethod
    def build(
        cls,
        settings: Settings,
        dsn: str,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        clock: Callable[[], datetime] = utcnow,
    ) -> AppContext:
        return cls(
            settings=settings,
            dsn=dsn,
            pool=pool,
            http=http,
            store=EventStore(pool),
            projections=Projections(pool),
            state=AppState(pool),
            clock=clock,
            github=GitHubClient(http, settings) if settings.github_token else None,
        )
