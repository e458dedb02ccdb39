"""The interaction webhook: follow-ups (`POST /webhooks/{application_id}/{token}`), the
original reply (`GET`/`PATCH`/`DELETE .../messages/@original`) and edits of a follow-up
(`PATCH .../messages/{message_id}`), authenticated by the interaction's token in the path."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.discord.interactions import FakeInteraction, Interactions


class Webhooks(Interactions):
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
        message = self._reply_message(interaction, interaction.payload["channel_id"], body, files)
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
