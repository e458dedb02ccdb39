"""A meta-test walking every cog: names, descriptions, access, and wire-test coverage."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

from discord import app_commands

from bot.client import ConductorBot, discover_extensions
from bot.context import AppContext
from bot.permissions import access_group
from bot.ui import limits
from bot.wiring import Services
from tests.fakes.discord_openapi import DiscordSpec

NAME = re.compile(r"^[-_a-z0-9]{1,32}$")
HERE = Path(__file__).parent
DRIVERS = {"invoke", "reply", "autocomplete"}


async def loaded_bot(context: AppContext) -> ConductorBot:
    bot = ConductorBot(Services.build(context))
    for name in bot.extension_names:
        await bot.load_extension(name)
    return bot


def invoked_in_tests() -> set[str]:
    """Command names the wire tests drive (first string argument of invoke/reply/autocomplete)."""
    names: set[str] = set()
    for path in HERE.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in DRIVERS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
    return names


async def test_every_command_is_well_formed(make_context: Callable[..., AppContext]) -> None:
    bot = await loaded_bot(make_context())
    try:
        tree = bot.tree
        seen: set[str] = set()
        leaves = [c for c in tree.walk_commands() if isinstance(c, app_commands.Command)]
        assert leaves
        for command in tree.walk_commands():
            assert NAME.match(command.name), command.qualified_name
            assert 1 <= len(command.description) <= limits.COMMAND_DESCRIPTION, command.name
            assert command.description != "…", f"/{command.qualified_name} has no description"
            assert command.qualified_name not in seen, f"duplicate /{command.qualified_name}"
            seen.add(command.qualified_name)
        for command in leaves:
            where = f"/{command.qualified_name}"
            assert access_group(command) is not None, f"{where} declares no access group"
            for param in command.parameters:
                assert NAME.match(param.name), f"{where} option {param.name}"
                assert param.description and param.description != "…", f"{where} {param.name}"
                assert len(param.description) <= limits.OPTION_DESCRIPTION, f"{where} {param.name}"
        # The payload that would be synced is valid for Discord's bulk-overwrite endpoint.
        spec = DiscordSpec()
        operation = spec.match("PUT", "/applications/1/guilds/2/commands")
        assert operation is not None
        assert spec.validate(operation, tree.definitions(None)) == []
    finally:
        await bot.close()


async def test_every_command_is_covered_by_a_wire_test(
    make_context: Callable[..., AppContext],
) -> None:
    bot = await loaded_bot(make_context())
    try:
        commands = {
            c.qualified_name
            for c in bot.tree.walk_commands()
            if isinstance(c, app_commands.Command)
        }
    finally:
        await bot.close()
    missing = commands - invoked_in_tests()
    assert not missing, f"commands without a wire test: {sorted(missing)}"


def test_extensions_are_discovered_and_private_modules_skipped() -> None:
    names = discover_extensions()
    assert "cogs.queue" in names
    assert not any(name.split(".")[-1].startswith("_") for name in names)
