"""A fake Discord for the real discord.py client to talk to, on 127.0.0.1.

It serves both halves of Discord a bot uses, one module of this package per resource family,
each holding that resource's handlers, state and test controls:

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

`FakeDiscord` below puts them together. A REST operation is served by a method named
`_op_<Discord's operationId>` in its resource's module: scripts/extract_discord_openapi.py reads
those names from this package to know which operations the committed OpenAPI extract must hold.
"""

from __future__ import annotations

from tests.fakes.discord.applications import Applications
from tests.fakes.discord.interactions import (
    EPHEMERAL,
    FakeInteraction,
    buttons,
    ephemeral,
)
from tests.fakes.discord.server import (
    API_PREFIX,
    Failure,
    RecordedRequest,
    request_started,
)
from tests.fakes.discord.webhooks import Webhooks


class FakeDiscord(Webhooks, Applications):
    """A local Discord: REST + gateway. `await start()`, then point discord.py at `api_url`."""


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
