"""Application commands of the guild: `PUT /applications/{application_id}/guilds/{guild_id}/
commands` (the bulk overwrite discord.py's sync sends; counted in `command_syncs`) and
`GET` of the same. `commands` holds them by name, as Discord stores them; an interaction a test
sends is built from them, so a test can only run a command the bot has synced."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.discord.server import Server

_SUB_COMMAND, _SUB_COMMAND_GROUP = 1, 2


class Commands(Server):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands: dict[str, dict[str, Any]] = {}  # name → command as Discord stores it
        self.command_syncs = 0

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

    # --- a command's data, as an interaction carries it ---------------------------------------
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
