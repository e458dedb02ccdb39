"""A fake Discord for the real discord.py client to talk to, on 127.0.0.1.

It serves both halves of Discord a bot uses, one module of tests/fakes/discord_parts/ per
resource family, each holding that resource's handlers, state and test controls:

* `server` — life cycle, and what every REST request under `/api/v10` goes through: matching
  to an operation of Discord's OpenAPI description, validation of the request and of the
  fake's answer (`schema_errors`, `unhandled`), the bot token, and the failures a test asks
  for with `fail(...)` (5xx, 429 with `retry_after`, or a network drop); `wait_for(...)`;
* `users`, `applications` — the bot's user and application;
* `guilds` — the guild, its roles and members;
* `channels` — channel messages (with `nonce` + `enforce_nonce` de-duplication) and threads;
* `commands` — the guild's application commands (bulk overwrite and list);
* `interactions` — `invoke(...)` (a slash command as a chosen user with chosen roles),
  `autocomplete(...)`, `press(...)` (a button), dispatched as INTERACTION_CREATE, and the
  interaction callback; the returned `FakeInteraction` shows what a person would see;
* `webhooks` — the interaction's follow-ups and original message;
* `gateway` — `/gateway/bot`, and the WebSocket at `/gateway`: HELLO, IDENTIFY → READY and
  GUILD_CREATE, heartbeat ACKs, RESUME (replaying what the client missed), presence updates.

Every response carries `Content-Type: application/json` exactly (discord.py does not parse a
charset suffix).

`FakeDiscord` below puts them together. Its body lists the REST operations the fake serves,
by Discord's operationId: scripts/extract_discord_openapi.py reads that list from this file to
know which operations the committed OpenAPI extract must hold.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.discord_parts.applications import Applications
from tests.fakes.discord_parts.interactions import (
    EPHEMERAL,
    FakeInteraction,
    buttons,
    ephemeral,
)
from tests.fakes.discord_parts.server import (
    API_PREFIX,
    Failure,
    RecordedRequest,
    request_started,
)
from tests.fakes.discord_parts.webhooks import Webhooks


class FakeDiscord(Webhooks, Applications):
    """A local Discord: REST + gateway. `await start()`, then point discord.py at `api_url`."""

    # --- the REST operations served, each handed to its resource's module ---------------------
    async def _op_get_my_user(self, *request: Any) -> web.Response:
        return await self._get_my_user(*request)

    async def _op_get_my_oauth2_application(self, *request: Any) -> web.Response:
        return await self._get_my_oauth2_application(*request)

    async def _op_get_my_application(self, *request: Any) -> web.Response:
        return await self._get_my_application(*request)

    async def _op_get_bot_gateway(self, *request: Any) -> web.Response:
        return await self._get_bot_gateway(*request)

    async def _op_get_gateway(self, *request: Any) -> web.Response:
        return await self._get_gateway(*request)

    async def _op_bulk_set_guild_application_commands(self, *request: Any) -> web.Response:
        return await self._bulk_set_guild_application_commands(*request)

    async def _op_list_guild_application_commands(self, *request: Any) -> web.Response:
        return await self._list_guild_application_commands(*request)

    async def _op_create_interaction_response(self, *request: Any) -> web.Response:
        return await self._create_interaction_response(*request)

    async def _op_execute_webhook(self, *request: Any) -> web.Response:
        return await self._execute_webhook(*request)

    async def _op_get_original_webhook_message(self, *request: Any) -> web.Response:
        return await self._get_original_webhook_message(*request)

    async def _op_update_original_webhook_message(self, *request: Any) -> web.Response:
        return await self._update_original_webhook_message(*request)

    async def _op_delete_original_webhook_message(self, *request: Any) -> web.Response:
        return await self._delete_original_webhook_message(*request)

    async def _op_update_webhook_message(self, *request: Any) -> web.Response:
        return await self._update_webhook_message(*request)

    async def _op_create_message(self, *request: Any) -> web.Response:
        return await self._create_message(*request)

    async def _op_create_thread_from_message(self, *request: Any) -> web.Response:
        return await self._create_thread_from_message(*request)


__all__ = [
    "API_PREFIX",
    "EPHEMERAL",
    "Failure",
    "FakeDiscord",
    "FakeInteraction",
    "RecordedRequest",
    "buttons",
    "ephemeral",
    "request_started",
]
