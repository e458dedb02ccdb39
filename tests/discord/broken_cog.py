"""An extension whose setup fails, for the start-up test."""

from __future__ import annotations

from typing import Any


async def setup(bot: Any) -> None:
    raise RuntimeError("the broken cog cannot start")
