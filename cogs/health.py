"""/health: deep health of the store and of the other dependencies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.permissions import QUERIES, access
from bot.ui import render, replies
from cogs._options import SHARE

if TYPE_CHECKING:
    from bot.client import ConductorBot


class HealthCog(commands.Cog):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot

    @access(QUERIES)
    @app_commands.command(name="health", description="Deep health of the store and upstreams")
    @app_commands.describe(share=SHARE)
    async def health(self, interaction: discord.Interaction[Any], share: bool = False) -> None:
        # Upstream checks may take up to their timeout: acknowledge first.
        await replies.defer(interaction, share=share)
        report = await self.bot.services.health.check()
        await replies.send(interaction, share=share, embed=render.health_embed(report))


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(HealthCog(bot))
