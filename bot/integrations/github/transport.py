"""gidgethub's aiohttp GitHubAPI with our timeout, counters, retries and rate-limit waits, over a
bounded ETag cache.

5xx answers and transport errors (timeouts, refused connections) are retried a bounded number of
times with exponential backoff. A 403/429 rate limit waits for `Retry-After`, else for
`X-RateLimit-Reset` when `X-RateLimit-Remaining` is 0, else a minute, doubled per attempt; a
wait longer than `RetryPolicy.max_wait` is refused with GitHubRateLimited instead.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from gidgethub import GitHubBroken, HTTPException
from gidgethub import aiohttp as gh_aiohttp

from bot.backoff import exponential
from bot.integrations.github.errors import GitHubRateLimited, GitHubUnavailable
from bot.integrations.github.models import RateLimitInfo

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
REQUESTER = "conductor-e"

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3  # retries after the first attempt, for 5xx, timeouts, rate limits
    backoff_base: float = 1.0  # seconds; doubled per attempt
    backoff_max: float = 30.0
    max_wait: float = 120.0  # the longest rate-limit wait we accept before giving up
    secondary_default_wait: float = 60.0  # GitHub: "wait for at least one minute"
    request_timeout: float = 30.0

    def backoff(self, attempt: int) -> float:
        return exponential(attempt - 1, base=self.backoff_base, cap=self.backoff_max)


def _rate_limit_from(headers: Mapping[str, str]) -> RateLimitInfo | None:
    try:
        limit = int(headers["x-ratelimit-limit"])
        remaining = int(headers["x-ratelimit-remaining"])
        reset = float(headers["x-ratelimit-reset"])
    except (KeyError, ValueError):
        return None
    used_raw = headers.get("x-ratelimit-used")
    return RateLimitInfo(
        resource=headers.get("x-ratelimit-resource", "core"),
        limit=limit,
        remaining=remaining,
        used=int(used_raw) if used_raw and used_raw.isdigit() else None,
        reset_at=datetime.fromtimestamp(reset, UTC),
    )


def _resource_for(url: str) -> str:
    return "search" if "/search/" in urlsplit(url).path else "core"


def url_path(url: str) -> str:
    """A URL's path, for messages: no host, no query."""
    return urlsplit(url).path or "/"


class BoundedCache(MutableMapping[str, Any]):
    """gidgethub's ETag cache, least recently used entries dropped beyond `max_entries`."""

    def __init__(self, max_entries: int = 5_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, Any] = OrderedDict()

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        self._data.move_to_end(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class RetryingAPI(gh_aiohttp.GitHubAPI):
    """gidgethub's aiohttp GitHubAPI plus counters, a timeout, retries and rate-limit waits."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        policy: RetryPolicy,
        sleep: Sleep,
        clock: Callable[[], float],
        **kwargs: Any,
    ) -> None:
        super().__init__(session, REQUESTER, **kwargs)
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=policy.request_timeout)
        self.requests_made = 0
        self.not_modified = 0
        self.limits: dict[str, RateLimitInfo] = {}
        self.waits: list[float] = []  # every rate-limit or backoff wait, in seconds

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await self._sleep(seconds)

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        attempt = 0
        while True:
            attempt += 1
            self.requests_made += 1
            try:
                async with self._session.request(
                    method, url, headers=headers, data=body, timeout=self._timeout
                ) as response:
                    payload = await response.read()
                    status, response_headers = response.status, response.headers
            except (TimeoutError, aiohttp.ClientError) as exc:
                if attempt > self.policy.max_retries:
                    raise GitHubUnavailable(
                        f"GitHub did not answer {method} {url_path(url)} after {attempt} attempts "
                        f"({type(exc).__name__})"
                    ) from None
                # DEBUG: when GitHub is down the loop says so once ("github: down").
                log.debug("GitHub %s %s: %s; retrying", method, url_path(url), type(exc).__name__)
                await self.sleep(self.policy.backoff(attempt))
                continue
            if status == 304:
                self.not_modified += 1
            info = _rate_limit_from(response_headers)
            if info is not None:
                self.limits[info.resource] = info
            return status, response_headers, payload

    async def manage_rate_limit(self, *, method: str, url: str) -> None:
        # Before asking, not after being refused: when GitHub said the window is spent, wait
        # for its reset rather than spend a request on a certain 403.
        info = self.limits.get(_resource_for(url))
        if info is None or info.remaining > 0:
            return
        wait = info.reset_at.timestamp() - self._clock() + 1.0
        if wait <= 0:
            return
        if wait > self.policy.max_wait:
            raise GitHubRateLimited(
                f"GitHub's {info.resource} rate limit is spent until "
                f"{info.reset_at:%H:%M:%S} UTC ({wait:.0f}s, more than the "
                f"{self.policy.max_wait:.0f}s we wait)"
            )
        await self.sleep(wait)
        self.limits.pop(info.resource, None)

    async def handle_rate_limit_error(
        self, *, method: str, url: str, exception: HTTPException, attempt: int
    ) -> bool:
        status = int(exception.status_code)
        if attempt > self.policy.max_retries:
            return False
        if isinstance(exception, GitHubBroken) or status >= 500:
            log.warning("GitHub %s %s answered %s; retrying", method, url_path(url), status)
            await self.sleep(self.policy.backoff(attempt))
            return True
        if status not in (403, 429):
            return False
        wait = self._rate_limit_wait(exception, status, attempt)
        if wait is None:
            return False  # a plain 403: permissions, not a rate limit
        if wait > self.policy.max_wait:
            raise GitHubRateLimited(
                f"GitHub rate-limited {method} {url_path(url)} for {wait:.0f}s, more than the "
                f"{self.policy.max_wait:.0f}s we wait"
            )
        log.warning("GitHub rate-limited %s %s; waiting %.1fs", method, url_path(url), wait)
        await self.sleep(wait)
        # Waited out: the refusal's "0 remaining" must not make manage_rate_limit wait again.
        self.limits.pop(_resource_for(url), None)
        return True

    def _rate_limit_wait(self, exc: HTTPException, status: int, attempt: int) -> float | None:
        """How long GitHub asks us to wait, following its documented order; None: not a limit."""
        headers = exc.headers
        retry_after = headers.get("retry-after")
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                pass
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            try:
                reset = float(headers["x-ratelimit-reset"])
            except ValueError:
                reset = self._clock() + self.policy.secondary_default_wait
            return max(0.0, reset - self._clock()) + 1.0
        message = str(exc).lower()
        if status == 429 or "rate limit" in message or "abuse" in message:
            # Uncapped here: a wait over max_wait is refused by the caller, not shortened.
            return exponential(attempt - 1, base=self.policy.secondary_default_wait, cap=math.inf)
        return None
