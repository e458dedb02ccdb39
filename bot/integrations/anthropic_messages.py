"""Conductor-E's own model calls (summaries) through the Messages API.

A thin wrapper round `anthropic.AsyncAnthropic`, built once by the composition root with an
explicit timeout and retry count, returning our own `Completion` (text plus the usage figures
the cost ledger needs) and raising our own errors, never SDK types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.settings import Settings

# The anthropic SDK costs the process about 50 MB: it is imported when a client is built (an
# ANTHROPIC_API_KEY is set), not by every module that names a Completion.
if TYPE_CHECKING:
    import anthropic

# A summary is a nicety with a template to fall back on: a hanging API may hold a run for
# about 40 s (two tries of 20 s), not the SDK's default of minutes.
DEFAULT_TIMEOUT = 20.0
DEFAULT_MAX_RETRIES = 1


@dataclass(frozen=True)
class Completion:
    """One model reply and what it used. `cache_creation_tokens` counts every cache write;
    `cache_creation_1h_tokens` is the part of it written with the 1-hour lifetime."""

    text: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cache_creation_1h_tokens: int = 0
    stop_reason: str | None = None
    message_id: str | None = None


class AnthropicError(Exception):
    """The Messages API refused or failed the request; the message is safe to show."""


class AnthropicUnavailable(AnthropicError):
    """No answer: connection failure, timeout, or overloaded/5xx after the retries."""


class AnthropicUnauthorized(AnthropicError):
    """Anthropic rejected ANTHROPIC_API_KEY (401): retrying cannot help."""


class AnthropicNotConfigured(AnthropicError):
    """ANTHROPIC_API_KEY is not set."""


class MessagesClient:
    """The Messages API, with explicit timeout and retries (the SDK's own backoff)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        import anthropic

        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> MessagesClient:
        """Build from ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL (the SDK default when unset)."""
        if settings.anthropic_api_key is None:
            raise AnthropicNotConfigured("ANTHROPIC_API_KEY is not set")
        return cls(
            settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def complete(self, system: str, prompt: str, model: str, max_tokens: int) -> Completion:
        """Send one user message with a system prompt and return the text reply and usage."""
        import anthropic
        from anthropic.types import TextBlock

        try:
            message = await self._client.messages.create(
                model=model,
                max_tokens=max_tokens,
                system=system,
                messages=[{"role": "user", "content": prompt}],
            )
        except anthropic.APITimeoutError:
            raise AnthropicUnavailable("the Anthropic API did not answer in time") from None
        except anthropic.APIConnectionError:
            raise AnthropicUnavailable("could not connect to the Anthropic API") from None
        except anthropic.APIStatusError as exc:
            kind = _error_type(exc)
            text = f"the Anthropic API answered {exc.status_code}" + (f" ({kind})" if kind else "")
            if exc.status_code >= 500 or exc.status_code == 429:
                raise AnthropicUnavailable(text) from None
            if exc.status_code == 401:
                raise AnthropicUnauthorized(text) from None
            raise AnthropicError(text) from None
        text = "".join(block.text for block in message.content if isinstance(block, TextBlock))
        usage = message.usage
        cache_creation = usage.cache_creation_input_tokens or 0
        detail = getattr(usage, "cache_creation", None)
        write_1h = (getattr(detail, "ephemeral_1h_input_tokens", 0) or 0) if detail else 0
        return Completion(
            text=text,
            model=message.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_input_tokens or 0,
            cache_creation_tokens=cache_creation,
            cache_creation_1h_tokens=min(write_1h, cache_creation),
            stop_reason=message.stop_reason,
            message_id=message.id,
        )

    async def close(self) -> None:
        await self._client.close()


def _error_type(exc: anthropic.APIStatusError) -> str | None:
    """The `error.type` of Anthropic's error body ("overloaded_error", ...), if any."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return None
