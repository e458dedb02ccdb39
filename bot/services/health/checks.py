"""Deep health: PostgreSQL (critical) and the upstreams Conductor-E talks to (not critical:
GitHub, Discord, Anthropic, and the agents' Valkey while push dispatch runs).

Upstream checks are cheap unauthenticated-or-free calls with a short timeout, and a good result
is cached briefly, so a readiness probe every few seconds does not hammer GitHub or Discord (a
failed one is not cached: its recovery shows at once). Beside each probe stands what the
component that uses the upstream knows (bot/services/health/components.py): a bot that cannot reach
Discord, or a GitHub sync whose token was rejected, shows down even when the probe answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from bot.context import AppContext
from bot.services.dispatch.dispatcher import DispatchService
from bot.services.health.components import ComponentState

UPSTREAM_TIMEOUT = 3.0
UPSTREAM_CACHE_SECONDS = 30.0
ANTHROPIC_DEFAULT_URL = "https://api.anthropic.com"


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    ok: bool
    critical: bool
    latency_ms: float | None
    detail: str
    # What the component using this upstream knows (None: no component here uses it).
    state: ComponentState | None = None

    @property
    def refused(self) -> bool:
        """The upstream answered but refused our credential (the probe's 401 or 403)."""
        return self.detail in ("HTTP 401", "HTTP 403")

    def as_json(self) -> dict[str, Any]:
        """The component as /healthz/deep and the dashboard show it."""
        body: dict[str, Any] = {
            "name": self.name,
            "status": "up" if self.ok else "down",
            "critical": self.critical,
            "latencyMs": self.latency_ms,
            "detail": self.detail,
        }
        if self.state is not None:
            body["component"] = {
                "status": self.state.status,
                "since": self.state.since.isoformat(),
                "lastError": self.state.error,
                "failedAttempts": self.state.failures,
            }
        return body


@dataclass(frozen=True)
class HealthReport:
    components: list[ComponentHealth] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when any critical component is down."""
        return all(c.ok for c in self.components if c.critical)


class HealthService:
    """Checks each dependency; `check()` never raises."""

    def __init__(self, context: AppContext, dispatch: DispatchService | None = None) -> None:
        self.context = context
        self.dispatch = dispatch
        self._cache: dict[str, tuple[float, ComponentHealth]] = {}

    async def check(self) -> HealthReport:
        """PostgreSQL every time; each configured upstream at most every 30 seconds."""
        checks = [self._postgres()]
        for name, probe in self._upstreams().items():
            checks.append(self._cached(name, probe))
        found = await asyncio.gather(*checks)
        return HealthReport([self._with_state(c) for c in found])

    def _with_state(self, probed: ComponentHealth) -> ComponentHealth:
        state = self.context.components.get(probed.name)
        if state is None:
            return probed
        if state.status == "up" or not probed.ok:
            return replace(probed, state=state)
        # The probe answered, but the component cannot use the upstream (yet, or at all).
        detail = f"{state.status} since {state.since:%Y-%m-%d %H:%M:%S} UTC: {state.error}"
        return replace(probed, ok=False, detail=detail, state=state)

    async def _postgres(self) -> ComponentHealth:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(UPSTREAM_TIMEOUT):
                await self.context.pool.fetchval("SELECT 1")
        except Exception as exc:  # any failure means "down"; the detail says which
            return ComponentHealth("postgres", False, True, None, _reason(exc))
        return ComponentHealth("postgres", True, True, _since(started), "ok")

    def _upstreams(self) -> dict[str, Callable[[], Awaitable[ComponentHealth]]]:
        settings = self.context.settings
        found: dict[str, Callable[[], Awaitable[ComponentHealth]]] = {}
        if settings.github_token is not None:
            found["github"] = lambda: self._http("github", f"{settings.github_api_url}/rate_limit")
        if settings.discord_bot_token is not None:
            found["discord"] = lambda: self._http("discord", f"{settings.discord_api_url}/gateway")
        if settings.anthropic_api_key is not None:
            base = (settings.anthropic_base_url or ANTHROPIC_DEFAULT_URL).rstrip("/")
            headers = {
                "x-api-key": settings.anthropic_api_key.get_secret_value(),
                "anthropic-version": "2023-06-01",
            }
            found["anthropic"] = lambda: self._http(
                "anthropic", f"{base}/v1/models?limit=1", headers
            )
        if self.dispatch is not None:
            found["valkey"] = self._valkey
        return found

    async def _valkey(self) -> ComponentHealth:
        """Not critical: without Valkey, assignments wait in the outbox and pull still works."""
        assert self.dispatch is not None
        try:
            async with asyncio.timeout(UPSTREAM_TIMEOUT):
                seconds = await self.dispatch.valkey.ping()
        except Exception as exc:
            return ComponentHealth("valkey", False, False, None, _reason(exc))
        return ComponentHealth("valkey", True, False, round(seconds * 1000, 2), "ok")

    async def _cached(
        self, name: str, probe: Callable[[], Awaitable[ComponentHealth]]
    ) -> ComponentHealth:
        now = time.monotonic()
        hit = self._cache.get(name)
        if hit is not None and now - hit[0] < UPSTREAM_CACHE_SECONDS:
            return hit[1]
        result = await probe()
        if result.ok:
            self._cache[name] = (now, result)
        else:
            self._cache.pop(name, None)
        return result

    async def _http(
        self, name: str, url: str, headers: dict[str, str] | None = None
    ) -> ComponentHealth:
        started = time.perf_counter()
        try:
            async with self.context.http.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT)
            ) as response:
                ok = response.status < 500 and response.status not in (401, 403)
                detail = "ok" if ok else f"HTTP {response.status}"
        except Exception as exc:
            return ComponentHealth(name, False, False, None, _reason(exc))
        return ComponentHealth(name, ok, False, _since(started), detail)


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _reason(exc: BaseException) -> str:
    # The type only: an exception's text may carry a DSN or a URL with credentials.
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"unreachable ({type(exc).__name__})"
