"""/issue: one issue's lifecycle (show), and steering it (approve, priority, hold, unhold,
requeue, assign; the "steer" permission group, see cogs/_steering.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.permissions import QUERIES, STEER, access
from bot.ui import render, replies
from cogs._options import ISSUE, SHARE, issue_autocomplete
from cogs._steering import (
    AGENT,
    REASON,
    actor_of,
    agent_autocomplete,
    confirmed,
    reply,
    steering_service,
)

if TYPE_CHECKING:
    from bot.client import ConductorBot

Priority = Literal["critical", "high", "normal"]


class IssueCog(
    commands.GroupCog, group_name="issue", group_description="Issues the agents work on"
):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot
        self.steering = steering_service(bot)
        self.confirm_timeout = bot.context.settings.confirm_timeout_seconds
        super().__init__()

    async def cog_unload(self) -> None:
        await self.steering.audit.drain()

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

    # --- steering ---------------------------------------------------------------------------
    @access(STEER)
    @app_commands.command(name="approve", description="Approve an issue for the agents")
    @app_commands.describe(issue=ISSUE, priority="Its priority (default: from its labels)")
    async def approve(
        self, interaction: discord.Interaction[Any], issue: str, priority: Priority | None = None
    ) -> None:
        actor = actor_of(interaction)
        await reply(interaction, lambda: self.steering.approve(issue, actor, priority))

    @access(STEER)
    @app_commands.command(name="priority", description="Change an issue's priority")
    @app_commands.describe(issue=ISSUE, priority="The new priority")
    @app_commands.autocomplete(issue=issue_autocomplete)
    async def priority(
        self, interaction: discord.Interaction[Any], issue: str, priority: Priority
    ) -> None:
        actor = actor_of(interaction)
        await reply(interaction, lambda: self.steering.priority(issue, priority, actor))

    @access(STEER)
    @app_commands.command(name="hold", description="Hold an issue: not handed out, not merged")
    @app_commands.describe(issue=ISSUE, reason=REASON)
    @app_commands.autocomplete(issue=issue_autocomplete)
    async def hold(
        self, interaction: discord.Interaction[Any], issue: str, reason: str | None = None
    ) -> None:
        actor = actor_of(interaction)
        await reply(interaction, lambda: self.steering.hold(issue, actor, reason))

    @access(STEER)
    @app_commands.command(name="unhold", description="Release a held issue")
    @app_commands.describe(issue=ISSUE)
    @app_commands.autocomplete(issue=issue_autocomplete)
    async def unhold(self, interaction: discord.Interaction[Any], issue: str) -> None:
        actor = actor_of(interaction)
        await reply(interaction, lambda: self.steering.unhold(issue, actor))

    @access(STEER)
    @app_commands.command(name="requeue", description="Take an issue back from its agent")
    @app_commands.describe(issue=ISSUE, reason=REASON)
    @app_commands.autocomplete(issue=issue_autocomplete)
    async def requeue(
        self, interaction: discord.Interaction[Any], issue: str, reason: str | None = None
    ) -> None:
        found = await self.steering.issue(issue)
        holder = f" from {found.assignee}" if found.assignee else ""
        actor = actor_of(interaction)
        await confirmed(
            interaction,
            title=f"Requeue {found.stream_id}?",
            what=f"Take {found.stream_id} ({found.state}){holder} back to the queue.",
            confirm_within=self.confirm_timeout,
            run=lambda: self.steering.requeue(issue, actor, reason),
        )

    @access(STEER)
    @app_commands.command(name="assign", description="Hand a queued issue to a given agent")
    @app_commands.describe(issue=ISSUE, agent=AGENT)
    @app_commands.autocomplete(issue=issue_autocomplete, agent=agent_autocomplete)
    async def assign(self, interaction: discord.Interaction[Any], issue: str, agent: str) -> None:
        found = await self.steering.check_assign(issue, agent)
        actor = actor_of(interaction)
        await confirmed(
            interaction,
            title=f"Assign {found.stream_id}?",
            what=f"Hand {found.stream_id} ({found.priority}) to {agent}.",
            confirm_within=self.confirm_timeout,
            run=lambda: self.steering.assign(issue, agent, actor),
        )


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(IssueCog(bot))
