"""The Anthropic Admin API: the organisation's API keys and its Messages usage per key.

Plain HTTP on the process's aiohttp session, since the SDK has no usage report; the shapes are
the documented ones, followed page by page. The Admin key (`sk-ant-admin...`,
ANTHROPIC_ADMIN_KEY) is sent as `x-api-key` and never appears in an error or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import aiohttp

API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
KEYS_PAGE = 100
USAGE_PAGE_DAYS = 31  # the documented maximum number of 1d buckets per page
MAX_PAGES = 200  # a server that never stops saying has_more must not hang us


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    status: str
    workspace_id: str | None
    created_at: str | None


@dataclass(frozen=True)
class KeyUsage:
    """Tokens on one day for one API key (None: Console/Workbench usage) and model."""

    day: date
    api_key_id: str | None
    model: str | None
    uncached_input_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    output_tokens: int

    @property
    def cache_creation_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def total_tokens(self) -> int:
        return (
            self.uncached_input_tokens
            + self.cache_read_tokens
            + self.cache_creation_tokens
            + self.output_tokens
        )


class AdminApiError(Exception):
    """The Admin API failed or answered something we cannot read; the message is safe."""


class AnthropicAdmin:
    """Read-only Admin API calls on a shared aiohttp session."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        admin_key: str,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._http = http
        self._key = admin_key
        self._base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _get(self, path: str, params: list[tuple[str, str]]) -> Mapping[str, Any]:
        headers = {"x-api-key": self._key, "anthropic-version": API_VERSION}
        try:
            async with self._http.get(
                self._base + path, params=params, headers=headers, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    detail = await _error_detail(response)
                    raise AdminApiError(
                        f"Anthropic Admin API {path} answered {response.status}{detail}"
                    )
                body = await response.json(content_type=None)
        except TimeoutError:
            raise AdminApiError(f"Anthropic Admin API {path} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise AdminApiError(
                f"Anthropic Admin API {path} could not be reached ({type(exc).__name__})"
            ) from None
        except ValueError:
            raise AdminApiError(f"Anthropic Admin API {path} answered with invalid JSON") from None
        if not isinstance(body, dict):
            raise AdminApiError(f"Anthropic Admin API {path} answered an unexpected shape")
        return body

    async def list_api_keys(self) -> list[ApiKey]:
        """Every API key of the organisation (all statuses), following `has_more`."""
        keys: list[ApiKey] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            params = [("limit", str(KEYS_PAGE))]
            if after:
                params.append(("after_id", after))
            body = await self._get("/v1/organizations/api_keys", params)
            try:
                for item in body["data"]:
                    keys.append(
                        ApiKey(
                            id=str(item["id"]),
                            name=str(item.get("name") or ""),
                            status=str(item.get("status") or "unknown"),
                            workspace_id=item.get("workspace_id"),
                            created_at=item.get("created_at"),
                        )
                    )
                more = bool(body.get("has_more"))
                after = body.get("last_id")
            except (KeyError, TypeError):
                raise AdminApiError(
                    "Anthropic Admin API api_keys answered an unexpected shape"
                ) from None
            if not more:
                return keys
            if not after:
                raise AdminApiError("Anthropic Admin API api_keys said has_more with no last_id")
        raise AdminApiError(f"Anthropic Admin API api_keys returned more than {MAX_PAGES} pages")

    async def messages_usage(self, starting_at: datetime, ending_at: datetime) -> list[KeyUsage]:
        """Messages usage per UTC day, API key and model in [starting_at, ending_at)."""
        usage: list[KeyUsage] = []
        page: str | None = None
        for _ in range(MAX_PAGES):
            params = [
                ("starting_at", _rfc3339(starting_at)),
                ("ending_at", _rfc3339(ending_at)),
                ("bucket_width", "1d"),
                ("limit", str(USAGE_PAGE_DAYS)),
                ("group_by[]", "api_key_id"),
                ("group_by[]", "model"),
            ]
            if page:
                params.append(("page", page))
            body = await self._get("/v1/organizations/usage_report/messages", params)
            try:
                for bucket in body["data"]:
                    day = datetime.fromisoformat(bucket["starting_at"]).date()
                    for result in bucket.get("results") or []:
                        usage.append(_key_usage(day, result))
                more = bool(body.get("has_more"))
                page = body.get("next_page")
            except (KeyError, TypeError, ValueError):
                raise AdminApiError(
                    "Anthropic Admin API usage_report answered an unexpected shape"
                ) from None
            if not more:
                return usage
            if not page:
                raise AdminApiError("Anthropic Admin API usage_report said has_more, no next_page")
        raise AdminApiError(f"Anthropic Admin API usage_report returned over {MAX_PAGES} pages")


def _key_usage(day: date, result: Mapping[str, Any]) -> KeyUsage:
    creation = result.get("cache_creation") or {}
    return KeyUsage(
        day=day,
        api_key_id=result.get("api_key_id"),
        model=result.get("model"),
        uncached_input_tokens=int(result.get("uncached_input_tokens") or 0),
        cache_read_tokens=int(result.get("cache_read_input_tokens") or 0),
        cache_write_5m_tokens=int(creation.get("ephemeral_5m_input_tokens") or 0),
        cache_write_1h_tokens=int(creation.get("ephemeral_1h_input_tokens") or 0),
        output_tokens=int(result.get("output_tokens") or 0),
    )


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def _error_detail(response: aiohttp.ClientResponse) -> str:
    """`: <error.type>: <message>` from Anthropic's error body, when there is one."""
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        kind, message = error.get("type"), error.get("message")
        return ": " + ": ".join(str(part)[:200] for part in (kind, message) if part)
    return ""
