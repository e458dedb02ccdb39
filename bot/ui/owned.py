"""Views whose buttons only the member who ran the command may press, and whose errors get
the command tree's one error reply."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import discord

log = logging.getLogger(__name__)


class OwnerOnlyView(discord.ui.View):
    """Anyone but `owner_id` who presses a button is told why, privately, and nothing happens.

    Subclasses word the refusal in `refusal`, with `{owner}` where the owner is mentioned.
    """

    refusal: ClassVar[str] = "Only {owner}, who ran the command, can use these buttons."

    def __init__(self, owner_id: int, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.owner_id = owner_id

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await interaction.response.send_message(
            self.refusal.format(owner=f"<@{self.owner_id}>"),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        return False

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        # Button presses do not pass through the tree; hand them to the same error reply.
        handler = getattr(interaction.client.tree, "report_error", None)
        if handler is not None:
            await handler(interaction, error)
        else:  # pragma: no cover - the ConductorTree always has it
            log.exception("%s error", type(self).__name__, exc_info=error)
