"""/help (the commands the caller may run) and /conductor sync (owner only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import Unavailable
from bot.permissions import OWNER, QUERIES, access, access_group
from bot.ui import render, replies

if TYPE_CHECKING:
    from bot.client import ConductorBot


class MetaCog(commands.Cog):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot

    @access(QUERIES)
    @app_commands.command(name="help", description="The commands you may run here")
    async def help(self, interaction: discord.Interaction[Any]) -> None:
        tree = self.bot.conductor_tree
        caller = await tree.caller(interaction)
        entries = []
        for command in tree.walk_commands():
            if not isinstance(command, app_commands.Command):
                continue
            if self.bot.policy.decide(access_group(command), caller).allowed:
                entries.append((command.qualified_name, command.description))
        await replies.send(interaction, embed=render.help_embed(sorted(entries)))

    conductor = app_commands.Group(name="conductor", description="Running the bot itself")

    @access(OWNER)
    @conductor.command(name="sync", description="Sync the slash commands to the server now")
    async def sync(self, interaction: discord.Interaction[Any]) -> None:
        guild_id = self.bot.context.settings.guild_id
        if guild_id is None:
            raise Unavailable("CONDUCTOR_GUILD_ID is not set, so there is no server to sync to")
        await replies.defer(interaction, share=False)
        tree = self.bot.conductor_tree
        await tree.sync_if_changed(force=True)
        count = len(tree.get_commands(guild=discord.Object(guild_id)))
        await replies.send(interaction, content=f"Synced {count} commands to this server.")


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(MetaCog(bot))
