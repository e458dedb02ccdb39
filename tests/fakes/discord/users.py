"""Users: the user objects the fake hands out, and `GET /users/@me` (the bot's own user)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.discord.server import Server


class Users(Server):
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

    async def _op_get_my_user(self, request: web.Request, *_: Any) -> web.Response:
        return self.json(self.bot_user())
