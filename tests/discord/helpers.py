"""Small assertions shared by the wire tests."""

from __future__ import annotations

import re
from typing import Any

from store.events import RecordedEvent
from tests.discord.conftest import Harness
from tests.fakes.discord import ephemeral

REF = re.compile(r"\(ref `([0-9a-f]{8})`\)")


def text_of(message: dict[str, Any]) -> str:
    """Everything a person reads in a message: content, embed titles, text and fields."""
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        for f in embed.get("fields") or []:
            parts += [f["name"], f["value"]]
        parts.append((embed.get("footer") or {}).get("text") or "")
    return "\n".join(parts)


def assert_error(message: dict[str, Any], *fragments: str) -> str:
    """An error reply: ephemeral, short, with a reference id; returns the id."""
    assert ephemeral(message), message
    content = message["content"]
    assert len(content) < 400, content
    assert content.startswith("❌"), content
    for fragment in fragments:
        assert fragment in content, content
    found = REF.search(content)
    assert found, content
    assert "Traceback" not in content
    return found.group(1)


async def break_database(harness: Harness) -> None:
    """Make PostgreSQL unreachable for the bot: its pool is terminated."""
    harness.context.pool.terminate()


async def denials(harness: Harness) -> list[RecordedEvent]:
    from store.catalogue import ADMIN_STREAM

    events = await harness.context.store.read_stream(ADMIN_STREAM)
    return [e for e in events if e.type == "ADMIN_ACTION_DENIED"]
