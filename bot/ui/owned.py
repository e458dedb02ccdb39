"""Views whose buttons only the member who ran the command may press."""

from __future__ import annotations

from typing import Any, ClassVar

import discord


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
