"""Paging through long answers with buttons that only the person who asked may press.

A `Paginator` asks its `source` for a page each time a button is pressed, so a paged queue
shows the queue as it is now, not as it was when the command ran. When it times out it
disables its buttons on the message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import discord

from bot.ui.owned import OwnerOnlyView

PREV, NEXT, FIRST, LAST = "pager:prev", "pager:next", "pager:first", "pager:last"


@dataclass(frozen=True)
class Page:
    embed: discord.Embed
    has_next: bool
    count: int | None  # the number of pages, when known


PageSource = Callable[[int], Awaitable[Page]]


def static_source(embeds: Sequence[discord.Embed]) -> PageSource:
    """Pages that are all known up front."""

    async def page(index: int) -> Page:
        index = max(0, min(index, len(embeds) - 1))
        return Page(embeds[index], index < len(embeds) - 1, len(embeds))

    return page


class Paginator(OwnerOnlyView):
    """First/previous/next/last buttons over a page source; owner-only; times out."""

    refusal = "Only {owner} can turn these pages; run the command yourself to page."

    def __init__(self, owner_id: int, source: PageSource, *, timeout: float = 300.0) -> None:
        super().__init__(owner_id, timeout=timeout)
        self.source = source
        self.index = 0
        self.count: int | None = None
        self.interaction: discord.Interaction[Any] | None = None

    async def first_page(self) -> Page:
        page = await self.source(0)
        self._sync(page)
        return page

    def needed(self, page: Page) -> bool:
        """Whether there is anything to page through."""
        return page.has_next or self.index > 0

    def _sync(self, page: Page) -> None:
        self.count = page.count
        self.first.disabled = self.prev.disabled = self.index == 0
        self.next.disabled = not page.has_next
        self.last.disabled = not page.has_next or page.count is None

    async def _show(self, interaction: discord.Interaction[Any], index: int) -> None:
        self.index = max(0, index)
        page = await self.source(self.index)
        if not page.has_next and page.count is not None and self.index >= page.count:
            self.index = page.count - 1
            page = await self.source(self.index)
        self._sync(page)
        await interaction.response.edit_message(embed=page.embed, view=self)

    @discord.ui.button(label="«", style=discord.ButtonStyle.secondary, custom_id=FIRST)
    async def first(self, interaction: discord.Interaction[Any], _: discord.ui.Button[Any]) -> None:
        await self._show(interaction, 0)

    @discord.ui.button(label="‹ Prev", style=discord.ButtonStyle.secondary, custom_id=PREV)
    async def prev(self, interaction: discord.Interaction[Any], _: discord.ui.Button[Any]) -> None:
        await self._show(interaction, self.index - 1)

    @discord.ui.button(label="Next ›", style=discord.ButtonStyle.primary, custom_id=NEXT)
    async def next(self, interaction: discord.Interaction[Any], _: discord.ui.Button[Any]) -> None:
        await self._show(interaction, self.index + 1)

    @discord.ui.button(label="»", style=discord.ButtonStyle.secondary, custom_id=LAST)
    async def last(self, interaction: discord.Interaction[Any], _: discord.ui.Button[Any]) -> None:
        await self._show(interaction, (self.count or 1) - 1)

    async def on_timeout(self) -> None:
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        if self.interaction is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.interaction.edit_original_response(view=self)
