"""Steering the work from Discord: /agent pause|resume here, and the helpers /issue's steering
subcommands (approve, priority, hold, unhold, requeue, assign; in cogs/issues.py, the /issue
group) share. The rules live in bot/services/work/steering.py; this module only asks and replies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.permissions import STEER, access
from bot.services.audit import AuditEntry, AuditService
from bot.services.work.steering import Steered, SteeringService
from bot.ui import replies
from bot.ui.confirm import Choice as Answer
from bot.ui.confirm import ConfirmView
from bot.ui.limits import CHOICE_NAME, CHOICES, cut
from cogs import _admin_render as render

if TYPE_CHECKING:
    from bot.client import ConductorBot

AGENT = "The agent's id, e.g. dev-e-python"
REASON = "Why (shown with it and in the audit trail)"
GREEN = discord.Colour.green()


def actor_of(interaction: discord.Interaction[Any]) -> str:
    return render.actor_of(interaction.user.id)


def steering_service(bot: ConductorBot) -> SteeringService:
    """A SteeringService whose finished actions are posted to the audit channel (if set)."""
    settings = bot.context.settings

    async def post(entry: AuditEntry) -> None:
        assert settings.audit_channel_id is not None
        channel = bot.get_partial_messageable(settings.audit_channel_id, guild_id=settings.guild_id)
        await channel.send(
            render.audit_post(entry), allowed_mentions=discord.AllowedMentions.none()
        )

    poster = post if settings.audit_channel_id is not None else None
    return SteeringService(bot.context, audit=AuditService(bot.context.store, poster=poster))


def done_embed(done: Steered) -> discord.Embed:
    embed = discord.Embed(title=f"{done.action}: {done.target}", description=done.summary)
    embed.colour = GREEN
    return embed


async def reply(
    interaction: discord.Interaction[Any], run: Callable[[], Awaitable[Steered]]
) -> None:
    """Run a steering action and say what changed."""
    await replies.defer(interaction, share=False)
    done = await run()
    await replies.send(interaction, embed=done_embed(done))


async def confirmed(
    interaction: discord.Interaction[Any],
    *,
    title: str,
    what: str,
    confirm_within: float,
    run: Callable[[], Awaitable[Steered]],
) -> None:
    """Ask the invoker to confirm (Confirm/Cancel), then run and show what changed."""
    user_id = interaction.user.id
    timeout = confirm_within
    question = render.confirm_embed(title, what, user_id, timeout, "steer")
    view = ConfirmView(
        user_id,
        timeout=timeout,
        confirm_label="Confirm",
        decided=lambda choice: render.decided_embed(question, choice, timeout),
    )
    if await view.ask(interaction, embed=question, ephemeral=True) is not Answer.CONFIRMED:
        return
    done = await run()
    await interaction.edit_original_response(embed=done_embed(done), view=None)


async def agent_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    """Known agents (from the projections) matching what was typed."""
    bot: ConductorBot = interaction.client
    names = await SteeringService(bot.context).agent_choices(current, CHOICES)
    return [app_commands.Choice(name=cut(n, CHOICE_NAME), value=n[:100]) for n in names]


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
