"""The guild the bot is in, its roles and members, as GUILD_CREATE and interactions carry
them. The fake has one guild (`guild_id`), with the roles of `role_ids` and the channels of
`channel_ids`."""

from __future__ import annotations

from typing import Any

from tests.fakes.discord.channels import Channels
from tests.fakes.discord.server import now_iso


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


class Guilds(Channels):
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
            "joined_at": now_iso(),
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
            "joined_at": now_iso(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
