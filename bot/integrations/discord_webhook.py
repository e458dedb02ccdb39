"""Posting to a Discord channel through an execute-webhook URL (DISCORD_WEBHOOK_URL): one message
per 2,000 characters, a 429 waited out, a 5xx or a dropped connection retried with bounded
backoff. The URL carries the webhook's token: it never appears in a log line or an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import SecretStr
from yarl import URL

from bot.backoff import exponential

log = logging.getLogger(__name__)

CONTENT_LIMIT = 2_000
USERNAME = "Conductor-E"

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class PostedMessage:
    """A message Discord created for one webhook post."""

    id: str
    channel_id: str | None


@dataclass(frozen=True)
class WebhookResult:
    """What one `post` did: the messages created, HTTP attempts made and seconds waited."""

    messages: list[PostedMessage]
    attempts: int
    waited_seconds: float


class WebhookError(Exception):
    """The post failed. The message is safe to log (no URL, no token).

    `posted` is how many parts of the text were posted before the failure (a retry continues
    from there); `retryable` is False for a refusal that will not heal by itself (404 Unknown
    Webhook, 401, 400).
    """

    def __init__(self, message: str, *, posted: int = 0, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.posted = posted
        self.retryable = retryable


def split_content(text: str, limit: int = CONTENT_LIMIT) -> list[str]:
    """Split `text` into parts of at most `limit` characters, at line breaks where possible."""
    text = text.strip()
    if not text:
        return []
    parts: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = text.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit  # one unbroken run of characters: cut it where it must be cut
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    parts.append(text)
    return [part for part in parts if part]


class DiscordWebhook:
    """One webhook target. Built once per process with the process's aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: SecretStr | str,
        *,
        username: str = USERNAME,
        max_attempts: int = 5,
        max_wait: float = 60.0,
        backoff: float = 1.0,
        timeout: float = 10.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        raw = url.get_secret_value() if isinstance(url, SecretStr) else url
        if not raw.startswith(("http://", "https://")):
            raise ValueError("DISCORD_WEBHOOK_URL: expected an http:// or https:// URL")
        self._url = URL(raw).update_query(wait="true")
        self.session = session
        self.username = username
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.backoff = backoff
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.sleep = sleep

    def __repr__(self) -> str:
        return f"DiscordWebhook(username={self.username!r}, url=<hidden>)"

    async def post(self, text: str, *, skip: int = 0) -> WebhookResult:
        """Post `text` as one message per 2,000-character part, in order.

        `skip` parts are left out (they were posted by an earlier, interrupted call). Raises
        WebhookError with `posted` = the parts posted so far, counting the skipped ones.
        """
        parts = split_content(text)[skip:]
        messages: list[PostedMessage] = []
        attempts = 0
        waited = 0.0
        for index, part in enumerate(parts):
            try:
                message, tries, slept = await self._execute(part)
            except WebhookError as exc:
                exc.posted = skip + index
                raise
            messages.append(message)
            attempts += tries
            waited += slept
        return WebhookResult(messages, attempts, waited)

    async def _execute(self, content: str) -> tuple[PostedMessage, int, float]:
        body = {
            "content": content,
            "username": self.username,
            # A summary quotes issue titles: never let one ping @everyone or a role.
            "allowed_mentions": {"parse": []},
        }
        waited = 0.0
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                async with self.session.post(
                    self._url, json=body, timeout=self.timeout
                ) as response:
                    status = response.status
                    payload = await _json_or_none(response)
                    header_wait = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The exception's text may carry the URL: keep the type only.
                reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
                if last:
                    raise WebhookError(f"Discord webhook unreachable ({reason})") from None
                wait = self._backoff(attempt)
            else:
                if 200 <= status < 300:
                    return _message(payload), attempt, waited
                if status == 429:
                    wait = _retry_after(payload, header_wait)
                    if wait > self.max_wait:
                        raise WebhookError(
                            f"Discord rate-limited the webhook for {wait:.0f}s "
                            f"(more than the {self.max_wait:.0f}s this post may wait)"
                        )
                    if last:
                        raise WebhookError("Discord kept rate-limiting the webhook")
                elif status >= 500:
                    if last:
                        raise WebhookError(f"Discord answered HTTP {status} to the webhook post")
                    wait = self._backoff(attempt)
                else:
                    reason = _discord_reason(payload)
                    raise WebhookError(
                        f"Discord refused the webhook post: HTTP {status}{reason}",
                        retryable=status in (408, 409),
                    )
            log.info("discord webhook: retrying in %.2fs (attempt %d)", wait, attempt)
            await self.sleep(wait)
            waited += wait
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, attempt: int) -> float:
        return exponential(attempt - 1, base=self.backoff, cap=self.max_wait)


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return None


def _retry_after(payload: Any, header: str | None) -> float:
    """Seconds to wait after a 429: the body's `retry_after` (fractional), else the header."""
    if isinstance(payload, dict):
        value = payload.get("retry_after")
        if isinstance(value, int | float) and value >= 0:
            return float(value)
    if header is not None:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    return 1.0


def _message(payload: Any) -> PostedMessage:
    # 204 (no wait) has no body; with ?wait=true Discord returns the message object.
    if not isinstance(payload, dict):
        return PostedMessage(id="", channel_id=None)
    channel = payload.get("channel_id")
    return PostedMessage(
        id=str(payload.get("id", "")), channel_id=str(channel) if channel else None
    )


def _discord_reason(payload: Any) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        return f" ({payload['message'][:200]})"
    return ""
