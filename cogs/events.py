"""/events recent: the latest events in the store, optionally of one type."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.permissions import QUERIES, access
from bot.services.work.queries import MAX_EVENTS
from bot.ui import render, replies
from cogs._options import SHARE, event_type_autocomplete

if TYPE_CHECKING:
    from bot.client import ConductorBot


class EventsCog(commands.GroupCog, group_name="events", group_description="The event store"):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot
        super().__init__()

    @access(QUERIES)
    @app_commands.command(name="recent", description="The latest events, newest first")
    @app_commands.describe(
        type="Only events of this type, e.g. ISSUE_ASSIGNED",
        limit=f"How many events (1-{MAX_EVENTS}, default 10)",
        share=SHARE,
    )
    @app_commands.autocomplete(type=event_type_autocomplete)
    async def recent(
        self,
        interaction: discord.Interaction[Any],
        type: str | None = None,
        limit: app_commands.Range[int, 1, MAX_EVENTS] = 10,
        share: bool = False,
    ) -> None:
        events = await self.bot.queries.recent_events(type, limit)
        await replies.send_pages(interaction, render.events_pages(events, type), share=share)


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(EventsCog(bot))
