"""Channels, their messages and threads: `POST /channels/{channel_id}/messages` (with `nonce` +
`enforce_nonce` de-duplication) and `POST /channels/{channel_id}/messages/{message_id}/threads`.

Every message the fake stores, whether posted in a channel or sent as an interaction's reply,
is in `messages`; `channel_messages(channel_id)` gives those posted in a channel."""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from tests.fakes.discord.server import now_iso
from tests.fakes.discord.users import Users


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


class Channels(Users):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.messages: dict[str, dict[str, Any]] = {}
        self.threads: dict[str, dict[str, Any]] = {}  # thread id → channel object

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

    def channel_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages posted in a channel (not interaction replies), oldest first."""
        return [
            m
            for m in self.messages.values()
            if m["channel_id"] == str(channel_id) and "interaction_metadata" not in m
        ]

    # --- messages as Discord stores them ------------------------------------------------------
    def _message(
        self,
        channel_id: str,
        body: dict[str, Any],
        *,
        flags: int = 0,
        files: list[tuple[str, bytes]] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": self.snowflake(),
            "channel_id": channel_id,
            "guild_id": str(self.guild_id),
            "author": self.bot_user(),
            "content": body.get("content") or "",
            "timestamp": now_iso(),
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
        message["edited_timestamp"] = now_iso()

    # --- REST ---------------------------------------------------------------------------------
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
                "archive_timestamp": now_iso(),
                "locked": False,
            },
        }
        message["thread"] = thread
        self.threads[thread["id"]] = thread
        return self.json(thread, 201)
