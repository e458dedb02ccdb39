"""Answering an interaction: ephemeral unless shared, deferring first when it may be slow.

A reply whose text would break the 2,000-character limit goes out as a file instead.
"""

from __future__ import annotations

import io
from typing import Any

import discord

from bot.ui.limits import CONTENT
from bot.ui.paginator import Paginator, static_source

PUBLIC_DEFER = "conductor_public_defer"


async def defer(interaction: discord.Interaction[Any], *, share: bool) -> None:
    """Acknowledge now ("thinking…") for work that may take over two seconds."""
    await interaction.response.defer(ephemeral=not share, thinking=True)
    interaction.extras[PUBLIC_DEFER] = share


async def send(
    interaction: discord.Interaction[Any],
    *,
    share: bool = False,
    content: str | None = None,
    embed: discord.Embed | None = None,
    view: discord.ui.View | None = None,
) -> None:
    """Reply (or fill in the deferred reply) with content, an embed and a view."""
    file = None
    if content is not None and len(content) > CONTENT:
        file = discord.File(io.BytesIO(content.encode()), filename="reply.txt")
        content = "The answer is longer than a Discord message; it is attached."
    kwargs: dict[str, Any] = {}
    if content is not None:
        kwargs["content"] = content
    if embed is not None:
        kwargs["embed"] = embed
    if view is not None:
        kwargs["view"] = view
    if not interaction.response.is_done():
        if file is not None:
            kwargs["file"] = file
        await interaction.response.send_message(
            ephemeral=not share, allowed_mentions=discord.AllowedMentions.none(), **kwargs
        )
    else:
        if file is not None:
            kwargs["attachments"] = [file]
        await interaction.edit_original_response(
            allowed_mentions=discord.AllowedMentions.none(), **kwargs
        )


async def send_pages(
    interaction: discord.Interaction[Any], pages: list[discord.Embed], *, share: bool
) -> None:
    """One embed, or the first of several with paging buttons for the invoker."""
    if len(pages) == 1:
        await send(interaction, share=share, embed=pages[0])
        return
    await send_paged(interaction, Paginator(interaction.user.id, static_source(pages)), share=share)


async def send_paged(
    interaction: discord.Interaction[Any], paginator: Paginator, *, share: bool
) -> None:
    page = await paginator.first_page()
    view = paginator if paginator.needed(page) else None
    paginator.interaction = interaction
    await send(interaction, share=share, embed=page.embed, view=view)
    if view is None:
        paginator.stop()
