"""Option descriptions and autocomplete shared by the query cogs (private: not an extension)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.ui.limits import CHOICE_NAME, CHOICES, cut

if TYPE_CHECKING:
    from bot.client import ConductorBot

SHARE = "Post the answer for everyone in the channel (default: only you see it)"
ISSUE = "The issue: owner/repo#123 or its GitHub URL"
REPO = "Only issues of this repository (owner/repo)"


def _bot(interaction: discord.Interaction[Any]) -> ConductorBot:
    return interaction.client  # type: ignore[no-any-return]


def _choices(values: list[str]) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=cut(v, CHOICE_NAME), value=v[:100]) for v in values[:CHOICES]]


async def issue_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    """Known issues (from the projections) matching what was typed."""
    return _choices(await _bot(interaction).queries.issue_choices(current))


async def repo_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    return _choices(await _bot(interaction).queries.repo_choices(current))


async def event_type_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    return _choices(_bot(interaction).queries.event_type_choices(current))
