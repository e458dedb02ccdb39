"""/issue show: one issue's lifecycle, from its events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.permissions import QUERIES, access
from bot.ui import render, replies
from cogs._options import ISSUE, SHARE, issue_autocomplete

if TYPE_CHECKING:
    from bot.client import ConductorBot


class IssueCog(
    commands.GroupCog, group_name="issue", group_description="Issues the agents work on"
):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot
        super().__init__()

    @access(QUERIES)
    @app_commands.command(name="show", description="An issue's lifecycle timeline, from its events")
    @app_commands.describe(issue=ISSUE, share=SHARE)
    @app_commands.autocomplete(issue=issue_autocomplete)
    async def show(
        self, interaction: discord.Interaction[Any], issue: str, share: bool = False
    ) -> None:
        timeline = await self.bot.queries.timeline(issue)
        pages = render.timeline_pages(timeline, self.bot.queries.now())
        await replies.send_pages(interaction, pages, share=share)


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(IssueCog(bot))
