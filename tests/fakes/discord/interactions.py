"""Interactions: the fake dispatches INTERACTION_CREATE over the gateway for a slash command
(`invoke`), autocomplete (`autocomplete`) or a button press (`press`), as a chosen user with
chosen roles, and answers `POST /interactions/{interaction_id}/{interaction_token}/callback`.
Each returns a `FakeInteraction` that collects everything the bot sent back for it; `reply()`
is the message a person sees."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.discord.commands import Commands
from tests.fakes.discord.gateway import Gateway
from tests.fakes.discord.server import Server, request_started

EPHEMERAL = 64

# Interaction and callback types.
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE = 2, 3, 4
CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 4, 5, 6, 7
AUTOCOMPLETE_RESULT = 8


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
    fake: Server | None = None
    dispatched_at: float | None = None  # perf_counter() as INTERACTION_CREATE is sent
    callback_at: float | None = None  # perf_counter() as the first callback arrives

    async def callback(self, timeout: float = 5.0) -> dict[str, Any]:
        """The first interaction callback body the bot sent."""
        assert self.fake is not None
        await self.fake.wait_for(
            lambda: bool(self.callbacks), timeout, what=f"a callback to interaction {self.id}"
        )
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

        await self.fake.wait_for(
            shown, timeout, what=f"the deferred reply to interaction {self.id} to be shown"
        )
        if self.original is not None and self.original.get("edited_timestamp"):
            return self.original
        return self.followups[0]


def ephemeral(message: dict[str, Any]) -> bool:
    return bool(int(message.get("flags") or 0) & EPHEMERAL)


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The buttons of a message by custom id."""
    return {
        c["custom_id"]: c
        for row in message.get("components") or []
        for c in row.get("components") or []
        if c.get("type") == 2 and "custom_id" in c
    }


class Interactions(Commands, Gateway):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interactions: dict[str, FakeInteraction] = {}
        self.invoked: list[str] = []  # qualified command names, in order

    # --- REST ---------------------------------------------------------------------------------
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
            message = self._reply_message(interaction, channel_id, shown, files)
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

    def _reply_message(
        self,
        interaction: FakeInteraction,
        channel_id: str,
        body: dict[str, Any],
        files: list[tuple[str, bytes]] | None,
    ) -> dict[str, Any]:
        """A message the bot sends in answer to an interaction (through its webhook)."""
        message = self._message(channel_id, body, files=files)
        message["webhook_id"] = str(self.application_id)
        message["application_id"] = str(self.application_id)
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
        return message

    # --- driving the bot ----------------------------------------------------------------------
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
