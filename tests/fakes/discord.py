"""A fake Discord for the real discord.py client to talk to, on 127.0.0.1.

It serves both halves of Discord a bot uses:

* the REST API under `/api/v10`: the bot's user and application, `/gateway/bot`, guild command
  bulk overwrite, interaction callbacks, follow-up and original-message webhooks, channel
  messages (with `nonce` + `enforce_nonce` de-duplication) and threads;
* the gateway WebSocket at `/gateway`: HELLO, IDENTIFY → READY and GUILD_CREATE, heartbeat
  ACKs, RESUME (replaying what the client missed), presence updates, and dispatching
  INTERACTION_CREATE for slash commands, autocomplete and button presses.

Every REST request is matched to an operation of Discord's OpenAPI description (the extract in
tests/fakes/data/, see tests/fakes/discord_openapi.py) and its body is validated against that
operation's request schema; a request that breaks it is answered 400 as Discord would and
recorded in `schema_errors`, which the test harness turns into a test failure. The fake's own
successful answers are checked against the operation's response schema the same way, so what
discord.py parses has the shape Discord documents. Requests to endpoints the fake does not
serve go to `unhandled`. Every response carries `Content-Type: application/json` exactly
(discord.py does not parse a charset suffix).

Tests drive it with `invoke(...)` (a slash command as a chosen user with chosen roles),
`autocomplete(...)`, `press(...)` (a button, as a chosen user) and read what a person would
see through the returned `FakeInteraction`. `fail(...)` makes chosen requests fail (5xx, 429
with `retry_after`, or a network drop) a number of times.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes import serve
from tests.fakes.discord_openapi import DiscordSpec, Operation

DISCORD_EPOCH_MS = 1_420_070_400_000
EPHEMERAL = 64
API_PREFIX = "/api/v10"

# Gateway opcodes.
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE = 0, 1, 2, 3
OP_RESUME, OP_RECONNECT, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 6, 7, 9, 10, 11

# Interaction and callback types.
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE = 2, 3, 4
CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 4, 5, 6, 7
AUTOCOMPLETE_RESULT = 8

_SUB_COMMAND, _SUB_COMMAND_GROUP = 1, 2


_STARTED = web.RequestKey("fake_discord_started", float)


def request_started(request: web.Request) -> float:
    """When the fake began reading a request (before body parsing and validation)."""
    return float(request[_STARTED])


def _numbered(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Components as Discord stores them: each has a numeric `id`; one sent without gets the
    next free number, depth first from 1."""
    taken: set[int] = set()
    pending = list(components)
    while pending:
        component = pending.pop()
        if component.get("id") is not None:
            taken.add(component["id"])
        pending.extend(component.get("components") or [])
    free = (n for n in itertools.count(1) if n not in taken)

    def number(component: dict[str, Any]) -> dict[str, Any]:
        numbered = {**component}
        if numbered.get("id") is None:
            numbered["id"] = next(free)
        if "components" in numbered:
            numbered["components"] = [number(child) for child in numbered["components"]]
        return numbered

    return [number(component) for component in components]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class RecordedRequest:
    method: str
    path: str
    operation_id: str | None
    query: dict[str, str]
    body: Any
    files: list[tuple[str, bytes]]
    status: int = 0


@dataclass
class Failure:
    """Make the next `times` requests of an operation fail."""

    operation_id: str
    status: int  # 0 drops the connection instead of answering
    times: int
    retry_after: float = 0.05
    channel_id: str | None = None


@dataclass
class FakeInteraction:
    """One interaction the fake dispatched, and everything the bot sent back for it."""

    id: str
    token: str
    type: int
    user_id: int
    payload: dict[str, Any]
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original: dict[str, Any] | None = None
    followups: list[dict[str, Any]] = field(default_factory=list)
    fake: FakeDiscord | None = None
    dispatched_at: float | None = None  # perf_counter() as INTERACTION_CREATE is sent
    callback_at: float | None = None  # perf_counter() as the first callback arrives

    async def callback(self, timeout: float = 5.0) -> dict[str, Any]:
        """The first interaction callback body the bot sent."""
        assert self.fake is not None
        await self.fake.wait_for(lambda: bool(self.callbacks), timeout)
        return self.callbacks[0]

    async def reply(self, timeout: float = 5.0) -> dict[str, Any]:
        """The message a person sees: the immediate reply, or the deferred one once edited
        or followed up. Its `flags` say whether it is ephemeral."""
        assert self.fake is not None
        first = await self.callback(timeout)
        if first["type"] in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
            assert self.original is not None
            return self.original

        def shown() -> bool:
            edited = self.original is not None and self.original.get("edited_timestamp")
            return bool(edited or self.followups)

        await self.fake.wait_for(shown, timeout)
        if self.original is not None and self.original.get("edited_timestamp"):
            return self.original
        return self.followups[0]


def ephemeral(message: dict[str, Any]) -> bool:
    return bool(int(message.get("flags") or 0) & EPHEMERAL)


def _role(role_id: int, name: str, position: int) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": "1071698660929" if name == "@everyone" else "8",
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def _placeholder_ids_as_strings(body: Any) -> Any:
    """A message that uploads files lists them in `attachments` with `id` = n of `files[n]`,
    an integer (as discord.py and Discord's own examples send), while the OpenAPI types every
    attachment id as a snowflake string: validate the placeholder as the string it stands for."""
    if isinstance(body, dict) and isinstance(body.get("attachments"), list):
        return {
            **body,
            "attachments": [
                {**a, "id": str(a["id"])}
                if isinstance(a, dict) and isinstance(a.get("id"), int)
                else a
                for a in body["attachments"]
            ],
        }
    return body


class FakeDiscord:
    """A local Discord: REST + gateway. `await start()`, then point discord.py at `api_url`."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token-0123456789",
        application_id: int = 900_000_000_000_000_001,
        bot_user_id: int = 900_000_000_000_000_001,
        owner_id: int = 800_000_000_000_000_001,
        guild_id: int = 700_000_000_000_000_001,
        role_ids: dict[str, int] | None = None,
        channel_ids: dict[str, int] | None = None,
        spec: DiscordSpec | None = None,
    ) -> None:
        self.token = token
        self.application_id = application_id
        self.bot_user_id = bot_user_id
        self.owner_id = owner_id
        self.guild_id = guild_id
        self.role_ids = role_ids or {}
        self.channel_ids = channel_ids or {"conductor-e": 700_000_000_000_000_100}
        self.spec = spec or DiscordSpec()
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

        self.requests: list[RecordedRequest] = []
        self.schema_errors: list[str] = []
        self.unhandled: list[str] = []
        self.failures: list[Failure] = []
        self.commands: dict[str, dict[str, Any]] = {}  # name → command as Discord stores it
        self.command_syncs = 0
        self.interactions: dict[str, FakeInteraction] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.threads: dict[str, dict[str, Any]] = {}  # thread id → channel object
        self.presences: list[dict[str, Any]] = []
        self.identifies = 0
        self.reject_identify = False  # close every IDENTIFY with 4004, as for a revoked token
        self.resumes = 0
        self.invoked: list[str] = []  # qualified command names, in order

        self._sockets: list[web.WebSocketResponse] = []
        self._session_id = secrets.token_hex(16)
        self._seq = 0
        self._sent: list[dict[str, Any]] = []  # dispatches of this session, for RESUME

    # --- life cycle ---------------------------------------------------------------------------
    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        self._runner, self.port = await serve(app, port)

    async def close(self) -> None:
        if self._runner is not None:
            # Stop listening first, as Discord going away would: a client that reconnects when
            # its socket closes is refused, not let in to a server that is shutting down.
            for site in list(self._runner.sites):
                await site.stop()
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # --- waiting ------------------------------------------------------------------------------
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> None:
        """Wait until `predicate()` is true, or fail with TimeoutError after `timeout`.

        Re-checked whenever the fake sees a request or a gateway message, and every 20 ms for
        predicates about the bot's own state (which changes after the fake has answered).
        """
        async with asyncio.timeout(timeout):
            async with self._changed:
                while not predicate():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.02)

    @property
    def connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets) and self.identifies > 0

    # --- ids and objects ----------------------------------------------------------------------
    def snowflake(self) -> str:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._ids) & 0x3FFFFF))

    def user(self, user_id: int, *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": str(user_id),
            "username": "conductor-e" if bot else f"user{user_id % 10_000}",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "primary_guild": None,
        }

    def bot_user(self) -> dict[str, Any]:
        return {
            **self.user(self.bot_user_id, bot=True),
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
        }

    def application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": "Conductor-E",
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 0,
            "flags_new": "0",
            "owner": self.user(self.owner_id),
            "team": None,
            "rpc_origins": [],
            "bot": self.bot_user(),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "tags": [],
            "approximate_guild_count": 1,
            "approximate_user_install_count": 0,
            "approximate_user_authorization_count": 0,
            "explicit_content_filter": 0,
            "eligible_oauth2_scopes": [],
        }

    def channel(self, name: str) -> dict[str, Any]:
        return {
            "id": str(self.channel_ids[name]),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": name,
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }

    def guild(self) -> dict[str, Any]:
        roles = [_role(self.guild_id, "@everyone", 0)]
        roles += [_role(rid, name, i + 1) for i, (name, rid) in enumerate(self.role_ids.items())]
        return {
            "id": str(self.guild_id),
            "name": "The Rig",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": roles,
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": _now_iso(),
            "large": False,
            "unavailable": False,
            "member_count": 2,
            "members": [self.member(self.bot_user_id, [], bot=True)],
            "channels": [self.channel(name) for name in self.channel_ids],
            "threads": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def member(self, user_id: int, role_ids: list[int], *, bot: bool = False) -> dict[str, Any]:
        return {
            "user": self.user(user_id, bot=bot),
            "nick": None,
            "avatar": None,
            "roles": [str(r) for r in role_ids],
            "joined_at": _now_iso(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }

    def _message(
        self,
        channel_id: str,
        body: dict[str, Any],
        *,
        flags: int = 0,
        interaction: FakeInteraction | None = None,
        webhook: bool = False,
        files: list[tuple[str, bytes]] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": self.snowflake(),
            "channel_id": channel_id,
            "guild_id": str(self.guild_id),
            "author": self.bot_user(),
            "content": body.get("content") or "",
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": body.get("embeds") or [],
            "pinned": False,
            "type": 0,
            "flags": flags | int(body.get("flags") or 0),
            "components": _numbered(body.get("components") or []),
        }
        self._attach(message, files or [])
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        if webhook:
            message["webhook_id"] = str(self.application_id)
            message["application_id"] = str(self.application_id)
        if interaction is not None:
            message["type"] = 20 if interaction.type == APPLICATION_COMMAND else 0
            message["interaction_metadata"] = {
                "id": interaction.id,
                "type": interaction.type,
                "user": self.user(interaction.user_id),
                "authorizing_integration_owners": {"0": str(self.guild_id)},
            }
            if interaction.type == MESSAGE_COMPONENT:
                pressed = interaction.payload["message"]["id"]
                message["interaction_metadata"]["interacted_message_id"] = pressed
        self.messages[message["id"]] = message
        return message

    def _attach(self, message: dict[str, Any], files: list[tuple[str, bytes]]) -> None:
        for name, data in files:
            message["attachments"].append(
                {
                    "id": self.snowflake(),
                    "filename": name,
                    "size": len(data),
                    "url": f"http://127.0.0.1:{self.port}/attachments/{name}",
                    "proxy_url": f"http://127.0.0.1:{self.port}/attachments/{name}",
                    "content": data.decode("utf-8", "replace"),
                }
            )

    def _update(
        self, message: dict[str, Any], body: dict[str, Any], files: list[tuple[str, bytes]]
    ) -> None:
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = (
                    body[key] if body[key] is not None else ([] if key != "content" else "")
                )
        message["components"] = _numbered(message["components"])
        if "attachments" in body:
            keep = {str(a.get("id")) for a in body["attachments"] or []}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in keep]
        self._attach(message, files)
        message["edited_timestamp"] = _now_iso()

    # --- REST ---------------------------------------------------------------------------------
    @staticmethod
    def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    @staticmethod
    def _error(status: int, message: str, code: int = 0, **extra: Any) -> web.Response:
        return FakeDiscord.json({"message": message, "code": code, **extra}, status)

    async def _read_body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
        if request.content_type == "multipart/form-data":
            body: Any = None
            files: list[tuple[str, bytes]] = []
            reader = await request.multipart()
            async for part in reader:
                data = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":  # type: ignore[union-attr]
                    body = json.loads(data)
                else:
                    files.append((part.filename or part.name or "file", bytes(data)))  # type: ignore[union-attr]
            return body, files
        raw = await request.read()
        if not raw:
            return None, []
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text=f"unexpected {request.content_type}")
        return json.loads(raw), []

    async def _rest(self, request: web.Request) -> web.Response:
        request[_STARTED] = time.perf_counter()
        path = "/" + request.match_info["tail"]
        body, files = await self._read_body(request)
        operation = self.spec.match(request.method, path)
        record = RecordedRequest(
            request.method,
            path,
            operation.operation_id if operation else None,
            dict(request.query),
            body,
            files,
        )
        self.requests.append(record)
        try:
            response = await self._answer(request, operation, body, files)
        finally:
            await self._notify()
        record.status = response.status
        if operation is not None and 200 <= response.status < 300 and response.body:
            assert isinstance(response.body, bytes)
            self.schema_errors.extend(
                f"{request.method} {operation.template} answered {response.status}: {error}"
                for error in self.spec.validate_response(
                    operation, response.status, json.loads(response.body)
                )
            )
        return response

    async def _answer(
        self,
        request: web.Request,
        operation: Operation | None,
        body: Any,
        files: list[tuple[str, bytes]],
    ) -> web.Response:
        if operation is None:
            self.unhandled.append(
                f"{request.method} {request.path} is not a Discord endpoint the fake serves "
                "(to serve one: add its `_op_<operationId>` handler, then run "
                "scripts/extract_discord_openapi.py)"
            )
            return self._error(404, "404: Not Found")
        errors = (
            self.spec.validate(operation, _placeholder_ids_as_strings(body))
            if self.spec.has_body(operation)
            else []
        )
        if errors:
            self.schema_errors.extend(
                f"{request.method} {operation.template}: {error}" for error in errors
            )
            return self._error(
                400, "Invalid Form Body", 50035, errors={"_errors": [{"message": errors[0]}]}
            )
        # Webhooks authenticate with their token in the path; GET /gateway needs nothing.
        public = operation.template.startswith(("/webhooks/", "/interactions/"))
        public = public or operation.operation_id == "get_gateway"
        if not public and request.headers.get("Authorization") != f"Bot {self.token}":
            return self._error(401, "401: Unauthorized")
        failure = self._failure_for(operation)
        if failure is not None:
            if failure.status == 0:
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            if failure.status == 429:
                retry = failure.retry_after
                return self.json(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": retry,
                        "global": False,
                    },
                    429,
                    {
                        # Discord's own 429s come through its proxy; a 429 without `Via` is
                        # how discord.py recognises a Cloudflare ban, which it does not retry.
                        "Via": "1.1 google",
                        "Retry-After": str(retry),
                        "X-RateLimit-Scope": "user",
                        "X-RateLimit-Bucket": "fake",
                        "X-RateLimit-Limit": "5",
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset-After": str(retry),
                    },
                )
            return self._error(failure.status, f"{failure.status}: Fake failure")
        handler = getattr(self, "_op_" + operation.operation_id, None)
        if handler is None:
            self.unhandled.append(f"{request.method} {operation.template} is not implemented")
            return self._error(404, "404: Not Found")
        result: web.Response = await handler(request, operation.params, body or {}, files)
        return result

    def fail(
        self,
        operation_id: str,
        status: int,
        times: int = 1,
        *,
        retry_after: float = 0.05,
        channel_id: int | None = None,
    ) -> None:
        """Fail the next `times` requests of an operation (status 0: drop the connection)."""
        self.failures.append(
            Failure(
                operation_id,
                status,
                times,
                retry_after,
                None if channel_id is None else str(channel_id),
            )
        )

    def _failure_for(self, operation: Operation) -> Failure | None:
        for failure in self.failures:
            if failure.operation_id != operation.operation_id or failure.times <= 0:
                continue
            if failure.channel_id and operation.params.get("channel_id") != failure.channel_id:
                continue
            failure.times -= 1
            return failure
        return None

    # Handlers are named after Discord's operation ids.
    async def _op_get_my_user(self, request: web.Request, *_: Any) -> web.Response:
        return self.json(self.bot_user())

    async def _op_get_my_oauth2_application(self, *_: Any) -> web.Response:
        return self.json(self.application())

    async def _op_get_my_application(self, *_: Any) -> web.Response:
        return self.json(self.application())

    async def _op_get_bot_gateway(self, *_: Any) -> web.Response:
        return self.json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _op_get_gateway(self, *_: Any) -> web.Response:
        return self.json({"url": self.gateway_url})

    async def _op_bulk_set_guild_application_commands(
        self, request: web.Request, params: dict[str, str], body: Any, files: Any
    ) -> web.Response:
        if params["application_id"] != str(self.application_id):
            return self._error(403, "Missing Access", 50001)
        if params["guild_id"] != str(self.guild_id):
            return self._error(403, "Missing Access", 50001)
        self.command_syncs += 1
        stored: dict[str, dict[str, Any]] = {}
        for command in body or []:
            old = self.commands.get(command["name"])
            stored[command["name"]] = {
                "type": 1,
                **command,
                "id": old["id"] if old else self.snowflake(),
                "application_id": str(self.application_id),
                "guild_id": str(self.guild_id),
                "version": self.snowflake(),
                "default_member_permissions": command.get("default_member_permissions"),
                # Discord fills in the app's default (guild install) when none is sent.
                "integration_types": command.get("integration_types") or [0],
                "options": command.get("options") or [],
            }
        self.commands = stored
        return self.json(list(stored.values()))

    async def _op_list_guild_application_commands(self, *_: Any) -> web.Response:
        return self.json(list(self.commands.values()))

    async def _op_create_interaction_response(
        self, request: web.Request, params: dict[str, str], body: Any, files: Any
    ) -> web.Response:
        interaction = self.interactions.get(params["interaction_id"])
        if interaction is None or interaction.token != params["interaction_token"]:
            return self._error(404, "Unknown interaction", 10062)
        if interaction.callbacks:
            return self._error(400, "Interaction has already been acknowledged.", 40060)
        interaction.callback_at = request_started(request)
        interaction.callbacks.append(body)
        kind = body["type"]
        data = body.get("data") or {}
        message: dict[str, Any] | None = None
        channel_id = interaction.payload["channel_id"]
        if kind in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
            flags = int(data.get("flags") or 0)
            shown = data if kind == CHANNEL_MESSAGE else {"flags": flags}
            message = self._message(
                channel_id, shown, interaction=interaction, webhook=True, files=files
            )
            if kind == DEFERRED_CHANNEL_MESSAGE:
                message["flags"] |= 128  # LOADING
            interaction.original = message
        elif kind in (UPDATE_MESSAGE, DEFERRED_UPDATE):
            target = self.messages[interaction.payload["message"]["id"]]
            if kind == UPDATE_MESSAGE:
                self._update(target, data, files)
            message = target
            interaction.original = target
        if "with_response" not in request.query:
            return web.Response(status=204)
        response: dict[str, Any] = {
            "interaction": {
                "id": interaction.id,
                "type": interaction.type,
                "response_message_loading": kind == DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(message and ephemeral(message)),
            },
        }
        if message is not None:
            response["interaction"]["response_message_id"] = message["id"]
        if kind in (CHANNEL_MESSAGE, UPDATE_MESSAGE):  # Discord documents no other resource
            response["resource"] = {"type": kind, "message": message}
        return self.json(response)

    def _interaction_for_token(self, token: str) -> FakeInteraction | None:
        for interaction in self.interactions.values():
            if interaction.token == token:
                return interaction
        return None

    async def _op_execute_webhook(
        self, request: web.Request, params: dict[str, str], body: Any, files: Any
    ) -> web.Response:
        interaction = self._interaction_for_token(params["webhook_token"])
        if interaction is None or params["webhook_id"] != str(self.application_id):
            return self._error(404, "Unknown Webhook", 10015)
        if not interaction.callbacks:
            return self._error(404, "Unknown Webhook", 10015)
        message = self._message(
            interaction.payload["channel_id"],
            body,
            interaction=interaction,
            webhook=True,
            files=files,
        )
        interaction.followups.append(message)
        if request.query.get("wait") in ("true", "1", "True"):
            return self.json(message)
        return web.Response(status=204)

    def _original_of(self, params: dict[str, str]) -> tuple[FakeInteraction | None, Any]:
        interaction = self._interaction_for_token(params["webhook_token"])
        if interaction is None or interaction.original is None:
            return None, self._error(404, "Unknown Message", 10008)
        return interaction, None

    async def _op_get_original_webhook_message(
        self, request: web.Request, params: dict[str, str], *_: Any
    ) -> web.Response:
        interaction, error = self._original_of(params)
        if interaction is None:
            return error  # type: ignore[no-any-return]
        return self.json(interaction.original)

    async def _op_update_original_webhook_message(
        self, request: web.Request, params: dict[str, str], body: Any, files: Any
    ) -> web.Response:
        interaction, error = self._original_of(params)
        if interaction is None:
            return error  # type: ignore[no-any-return]
        assert interaction.original is not None
        self._update(interaction.original, body, files)
        interaction.original["flags"] &= ~128
        return self.json(interaction.original)

    async def _op_delete_original_webhook_message(
        self, request: web.Request, params: dict[str, str], *_: Any
    ) -> web.Response:
        interaction, error = self._original_of(params)
        if interaction is None:
            return error  # type: ignore[no-any-return]
        assert interaction.original is not None
        self.messages.pop(interaction.original["id"], None)
        interaction.original = None
        return web.Response(status=204)

    async def _op_update_webhook_message(
        self, request: web.Request, params: dict[str, str], body: Any, files: Any
    ) -> web.Response:
        message = self.messages.get(params["message_id"])
        if message is None:
            return self._error(404, "Unknown Message", 10008)
        self._update(message, body, files)
        return self.json(message)

    def channel_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages posted in a channel (not interaction replies), oldest first."""
        return [
            m
            for m in self.messages.values()
            if m["channel_id"] == str(channel_id) and "interaction_metadata" not in m
        ]

    async def _op_create_message(
        self, request: web.Request, params: dict[str, str], body: Any, files: Any
    ) -> web.Response:
        channel_id = params["channel_id"]
        known = {str(c) for c in self.channel_ids.values()} | set(self.threads)
        if channel_id not in known:
            return self._error(404, "Unknown Channel", 10003)
        if body.get("enforce_nonce") and body.get("nonce") is not None:
            # Discord returns the message already created with this nonce (for a few minutes).
            for message in self.channel_messages(int(channel_id)):
                if message.get("nonce") == body["nonce"]:
                    return self.json(message)
        return self.json(self._message(channel_id, body, files=files))

    async def _op_create_thread_from_message(
        self, request: web.Request, params: dict[str, str], body: Any, files: Any
    ) -> web.Response:
        message = self.messages.get(params["message_id"])
        if message is None or message["channel_id"] != params["channel_id"]:
            return self._error(404, "Unknown Message", 10008)
        if message.get("thread"):
            return self._error(400, "A thread has already been created for this message", 160004)
        thread = {
            "id": message["id"],  # Discord gives a thread started from a message its id
            "type": 11,
            "guild_id": str(self.guild_id),
            "parent_id": params["channel_id"],
            "owner_id": str(self.bot_user_id),
            "name": body["name"],
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "total_message_sent": 0,
            "member_count": 1,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": body.get("auto_archive_duration", 1440),
                "archive_timestamp": _now_iso(),
                "locked": False,
            },
        }
        message["thread"] = thread
        self.threads[thread["id"]] = thread
        return self.json(thread, 201)

    # --- gateway ------------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"op": OP_HELLO, "d": {"heartbeat_interval": 41_250}}))
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                await self._on_gateway(ws, json.loads(frame.data))
        finally:
            await self._notify()
        return ws

    async def _on_gateway(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        op, data = message.get("op"), message.get("d")
        if op == OP_HEARTBEAT:
            await ws.send_str(json.dumps({"op": OP_HEARTBEAT_ACK}))
        elif op == OP_IDENTIFY:
            if data.get("token") != self.token or self.reject_identify:
                await ws.close(code=4004, message=b"Authentication failed.")
                return
            self.identifies += 1
            self._session_id = secrets.token_hex(16)
            self._seq = 0
            self._sent = []
            ready = {
                "v": 10,
                "user": self.bot_user(),
                "guilds": [{"id": str(self.guild_id), "unavailable": True}],
                "session_id": self._session_id,
                "resume_gateway_url": self.gateway_url,
                "shard": [0, 1],
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "user_settings": {},
                "geo_ordered_rtc_regions": [],
                "guild_join_requests": [],
                "_trace": ["fake-discord"],
            }
            await self._send_dispatch(ws, "READY", ready)
            await self._send_dispatch(ws, "GUILD_CREATE", self.guild())
        elif op == OP_RESUME:
            if data.get("token") != self.token or data.get("session_id") != self._session_id:
                await ws.send_str(json.dumps({"op": OP_INVALID_SESSION, "d": False}))
                return
            self.resumes += 1
            missed = [event for event in self._sent if event["s"] > int(data.get("seq") or 0)]
            for event in missed:
                await ws.send_str(json.dumps(event))
            await self._send_dispatch(ws, "RESUMED", {"_trace": ["fake-discord"]})
        elif op == OP_PRESENCE:
            self.presences.append(data)
        await self._notify()

    async def _send_dispatch(self, ws: web.WebSocketResponse | None, name: str, data: Any) -> None:
        self._seq += 1
        event = {"op": OP_DISPATCH, "t": name, "s": self._seq, "d": data}
        self._sent.append(event)
        if ws is not None and not ws.closed:
            await ws.send_str(json.dumps(event))

    def _live_socket(self) -> web.WebSocketResponse | None:
        live = [ws for ws in self._sockets if not ws.closed]
        return live[-1] if live else None

    async def dispatch(self, name: str, data: Any) -> None:
        """Send a gateway event; when no socket is open it waits in the RESUME buffer."""
        await self._send_dispatch(self._live_socket(), name, data)

    async def drop_connection(self, code: int = 4000) -> None:
        """Close the gateway socket as Discord does on a hiccup (resumable by default)."""
        ws = self._live_socket()
        if ws is not None:
            await ws.close(code=code, message=b"fake disconnect")

    # --- driving the bot ----------------------------------------------------------------------
    def _command(self, name: str) -> dict[str, Any]:
        top = name.split()[0]
        if top not in self.commands:
            raise AssertionError(f"/{top} was never synced to the guild: {sorted(self.commands)}")
        return self.commands[top]

    @staticmethod
    def _leaf_options(command: dict[str, Any], path: list[str]) -> list[dict[str, Any]]:
        options = command.get("options") or []
        for part in path:
            sub = [o for o in options if o["name"] == part and o["type"] in (1, 2)]
            if not sub:
                raise AssertionError(f"/{command['name']} has no subcommand {part!r}")
            options = sub[0].get("options") or []
        return options

    def _command_data(
        self, name: str, options: dict[str, Any], focused: str | None = None
    ) -> dict[str, Any]:
        command = self._command(name)
        path = name.split()[1:]
        declared = {o["name"]: o for o in self._leaf_options(command, path)}
        values = []
        for key, value in options.items():
            if key not in declared:
                raise AssertionError(f"/{name} has no option {key!r}: {sorted(declared)}")
            option: dict[str, Any] = {"name": key, "type": declared[key]["type"], "value": value}
            if key == focused:
                option["focused"] = True
            values.append(option)
        nested: list[dict[str, Any]] = values
        for part in reversed(path):
            sub_type = _SUB_COMMAND if part == path[-1] else _SUB_COMMAND_GROUP
            nested = [{"name": part, "type": sub_type, "options": nested}]
        return {
            "id": command["id"],
            "name": command["name"],
            "type": 1,
            "guild_id": str(self.guild_id),
            "options": nested,
        }

    def _interaction(
        self,
        kind: int,
        data: dict[str, Any],
        user_id: int,
        role_ids: list[int],
        *,
        channel: str = "conductor-e",
        message: dict[str, Any] | None = None,
        guild_id: int | None = None,
    ) -> FakeInteraction:
        interaction_id = self.snowflake()
        guild = str(guild_id or self.guild_id)
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        channel_obj = self.channel(channel)
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "guild_id": guild,
            "guild": {"id": guild, "locale": "en-US", "features": []},
            "channel_id": channel_obj["id"],
            "channel": {**channel_obj, "permissions": "1071698660929"},
            "member": {**self.member(user_id, role_ids), "permissions": "1071698660929"},
            "token": token,
            "version": 1,
            "app_permissions": "1071698660929",
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(self.guild_id)},
            "context": 0,
            "attachment_size_limit": 10_485_760,
        }
        if message is not None:
            payload["message"] = message
        interaction = FakeInteraction(interaction_id, token, kind, user_id, payload, fake=self)
        self.interactions[interaction_id] = interaction
        return interaction

    async def invoke(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user_id: int = 600_000_000_000_000_001,
        role_ids: list[int] | None = None,
        channel: str = "conductor-e",
        guild_id: int | None = None,
    ) -> FakeInteraction:
        """Run a slash command (`"queue show"`) as a user, as Discord would dispatch it;
        `guild_id` sends it from another server the bot is in."""
        data = self._command_data(name, options or {})
        interaction = self._interaction(
            APPLICATION_COMMAND, data, user_id, role_ids or [], channel=channel, guild_id=guild_id
        )
        self.invoked.append(name)
        interaction.dispatched_at = time.perf_counter()
        await self.dispatch("INTERACTION_CREATE", interaction.payload)
        return interaction

    async def autocomplete(
        self,
        name: str,
        options: dict[str, Any],
        focused: str,
        *,
        user_id: int = 600_000_000_000_000_001,
        role_ids: list[int] | None = None,
    ) -> list[dict[str, Any]]:
        """The choices the bot offers while a user types option `focused`."""
        data = self._command_data(name, options, focused)
        interaction = self._interaction(AUTOCOMPLETE, data, user_id, role_ids or [])
        await self.dispatch("INTERACTION_CREATE", interaction.payload)
        body = await interaction.callback()
        assert body["type"] == AUTOCOMPLETE_RESULT, body
        choices: list[dict[str, Any]] = body["data"]["choices"]
        return choices

    async def press(
        self,
        message: dict[str, Any],
        custom_id: str,
        *,
        user_id: int = 600_000_000_000_000_001,
        role_ids: list[int] | None = None,
    ) -> FakeInteraction:
        """Press a button of a message the bot sent, as a chosen user."""
        ids = [
            c.get("custom_id")
            for row in message.get("components") or []
            for c in row.get("components") or []
        ]
        if custom_id not in ids:
            raise AssertionError(f"no button {custom_id!r} on the message; it has {ids}")
        data = {"custom_id": custom_id, "component_type": 2}
        interaction = self._interaction(
            MESSAGE_COMPONENT, data, user_id, role_ids or [], message=message
        )
        await self.dispatch("INTERACTION_CREATE", interaction.payload)
        return interaction


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The buttons of a message by custom id."""
    return {
        c["custom_id"]: c
        for row in message.get("components") or []
        for c in row.get("components") or []
        if c.get("type") == 2 and "custom_id" in c
    }
