"""/agents: each agent's status, current issue and last heartbeat; stale ones marked."""

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


class AgentsCog(commands.Cog):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot

    @access(QUERIES)
    @app_commands.command(name="agents", description="Each agent's status and last heartbeat")
    @app_commands.describe(share=SHARE)
    async def agents(self, interaction: discord.Interaction[Any], share: bool = False) -> None:
        agents = await self.bot.queries.agents()
        pages = render.agents_pages(agents, self.bot.queries.now(), self.bot.context.stale_after)
        await replies.send_pages(interaction, pages, share=share)


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(AgentsCog(bot))
