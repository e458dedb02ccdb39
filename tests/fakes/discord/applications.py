"""Applications: `GET /applications/@me` and `GET /oauth2/applications/@me`, the bot's
application as discord.py reads it at login."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.discord.users import Users


class Applications(Users):
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

    async def _op_get_my_oauth2_application(self, *_: Any) -> web.Response:
        return self.json(self.application())

    async def _op_get_my_application(self, *_: Any) -> web.Response:
        return self.json(self.application())
