"""What the steering cogs share: /agent (cogs/steer.py) and /issue's steering subcommands
(cogs/issues.py). The rules live in bot/services/work/steering.py; these only ask and reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

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
    audit = AuditService(bot.context.store, poster=poster)
    return SteeringService(bot.context, bot.services.routing, audit=audit)


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
    names = await bot.services.queries.agent_choices(current, CHOICES)
    return [app_commands.Choice(name=cut(n, CHOICE_NAME), value=n[:100]) for n in names]
