"""Services for tests, wired as the composition root wires them (bot/wiring.py)."""

from __future__ import annotations

from typing import Any

from bot.context import AppContext
from bot.services.coordination.loop import CoordinationService, Poster, Syncer
from bot.services.coordination.summary import Summariser
from bot.wiring import Services


def coordination(
    context: AppContext,
    syncer: Syncer | None,
    summariser: Summariser,
    poster: Poster | None,
    **overrides: Any,
) -> CoordinationService:
    """A coordination service over `context`'s services, with its own sync, summariser and
    poster, and any collaborator replaced by `overrides` (e.g. `stuck=`)."""
    services = Services.build(context)
    parts: dict[str, Any] = {
        "health": services.health,
        "stuck": services.stuck,
        "routing": services.routing,
        "merge_gate": services.merge_gate,
        "costs": services.costs,
    }
    return CoordinationService(context, syncer, summariser, poster, **{**parts, **overrides})
