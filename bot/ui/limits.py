"""Discord's message and embed limits, and helpers that fit text inside them.

Replies never fail on a limit: text is cut with an ellipsis, long lists are paged
(`chunk_lines`), and content that would exceed 2,000 characters goes into a file.
"""

from __future__ import annotations

from collections.abc import Iterable

import discord

CONTENT = 2_000
EMBED_TITLE = 256
EMBED_DESCRIPTION = 4_096
EMBED_FIELDS = 25
FIELD_NAME = 256
FIELD_VALUE = 1_024
FOOTER = 2_048
AUTHOR = 256
EMBED_TOTAL = 6_000
EMBEDS_PER_MESSAGE = 10
CHOICES = 25
CHOICE_NAME = 100
CHOICE_VALUE = 100
COMMAND_NAME = 32
COMMAND_DESCRIPTION = 100
OPTION_DESCRIPTION = 100
BUTTON_LABEL = 80
# Kept under the embed limit so that a page leaves room for the title and footer.
PAGE_TEXT = 3_800


def cut(text: str, limit: int) -> str:
    """`text` shortened to `limit` characters, ending in an ellipsis when it was cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…"


def chunk_lines(
    lines: Iterable[str], limit: int = PAGE_TEXT, per_page: int | None = None
) -> list[str]:
    """Join lines into pages of at most `limit` characters (and `per_page` lines)."""
    pages: list[str] = []
    current: list[str] = []
    size = 0
    for raw in lines:
        line = cut(raw, limit)
        extra = len(line) + (1 if current else 0)
        if current and (size + extra > limit or (per_page and len(current) >= per_page)):
            pages.append("\n".join(current))
            current, size = [], 0
            extra = len(line)
        current.append(line)
        size += extra
    if current or not pages:
        pages.append("\n".join(current))
    return pages


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Cut an embed's parts to Discord's limits, the description last, so it always posts."""
    if embed.title:
        embed.title = cut(embed.title, EMBED_TITLE)
    if embed.footer and embed.footer.text:
        embed.set_footer(text=cut(embed.footer.text, FOOTER), icon_url=embed.footer.icon_url)
    fields = embed.fields[:EMBED_FIELDS]
    embed.clear_fields()
    for f in fields:
        embed.add_field(
            name=cut(f.name or "\u200b", FIELD_NAME),
            value=cut(f.value or "\u200b", FIELD_VALUE),
            inline=bool(f.inline),
        )
    if embed.description:
        embed.description = cut(embed.description, EMBED_DESCRIPTION)
    overflow = len(embed) - EMBED_TOTAL
    if overflow > 0 and embed.description:
        embed.description = cut(embed.description, max(1, len(embed.description) - overflow))
    while len(embed) > EMBED_TOTAL and embed.fields:
        embed.remove_field(len(embed.fields) - 1)
    return embed
