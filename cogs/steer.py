"""/agent pause|resume: steer one agent from Discord (the shared helpers are in
cogs/_steering.py; the rules in bot/services/work/steering.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.permissions import STEER, access
from cogs._steering import AGENT, REASON, actor_of, agent_autocomplete, reply, steering_service

if TYPE_CHECKING:
    from bot.client import ConductorBot


class AgentCog(commands.GroupCog, group_name="agent", group_description="Steer one agent"):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot
        self.steering = steering_service(bot)
        super().__init__()

    async def cog_unload(self) -> None:
        await self.steering.audit.drain()

    @access(STEER)
    @app_commands.command(name="pause", description="Hand the agent nothing new until resumed")
    @app_commands.describe(agent=AGENT, reason=REASON)
    @app_commands.autocomplete(agent=agent_autocomplete)
    async def pause(
        self, interaction: discord.Interaction[Any], agent: str, reason: str | None = None
    ) -> None:
        actor = actor_of(interaction)
        await reply(interaction, lambda: self.steering.pause(agent, actor, reason))

    @access(STEER)
    @app_commands.command(name="resume", description="Let a paused agent take work again")
    @app_commands.describe(agent=AGENT)
    @app_commands.autocomplete(agent=agent_autocomplete)
    async def resume(self, interaction: discord.Interaction[Any], agent: str) -> None:
        actor = actor_of(interaction)
        await reply(interaction, lambda: self.steering.resume(agent, actor))


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(AgentCog(bot))
