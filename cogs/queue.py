"""/queue show and /queue why: the priority queue of issues waiting for an agent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.permissions import QUERIES, access
from bot.ui import render, replies
from bot.ui.paginator import Page, Paginator
from cogs._options import ISSUE, REPO, SHARE, issue_autocomplete, repo_autocomplete

if TYPE_CHECKING:
    from bot.client import ConductorBot

PAGE_SIZE = 10


class QueueCog(
    commands.GroupCog, group_name="queue", group_description="The queue of issues for the agents"
):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot
        super().__init__()

    @access(QUERIES)
    @app_commands.command(name="show", description="Show the priority queue, paged")
    @app_commands.describe(repo=REPO, share=SHARE)
    @app_commands.autocomplete(repo=repo_autocomplete)
    async def show(
        self, interaction: discord.Interaction[Any], repo: str | None = None, share: bool = False
    ) -> None:
        queries = self.bot.queries

        async def source(index: int) -> Page:
            page = await queries.queue_page(repo, index * PAGE_SIZE, PAGE_SIZE)
            return Page(render.queue_embed(page, queries.now()), page.has_next, page.pages)

        await replies.send_paged(interaction, Paginator(interaction.user.id, source), share=share)

    @access(QUERIES)
    @app_commands.command(name="why", description="Why an issue is or is not at the top")
    @app_commands.describe(issue=ISSUE, share=SHARE)
    @app_commands.autocomplete(issue=issue_autocomplete)
    async def why(
        self, interaction: discord.Interaction[Any], issue: str, share: bool = False
    ) -> None:
        explanation = await self.bot.queries.why(issue)
        embed = render.why_embed(explanation, self.bot.queries.now())
        await replies.send(interaction, share=share, embed=embed)


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(QueueCog(bot))
