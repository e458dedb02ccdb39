"""Named values kept across restarts (consumer positions, command-sync hashes)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from store.errors import unavailable_on_connection_loss


class AppState:
    """Get and set small JSON values by key."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, key: str, default: Any = None) -> Any:
        with unavailable_on_connection_loss():
            row = await self.pool.fetchrow("SELECT value FROM app_state WHERE key = $1", key)
        return default if row is None else row["value"]

    async def set(self, key: str, value: Any) -> None:
        json.dumps(value)  # fail here, with the caller's value, if it cannot be stored
        with unavailable_on_connection_loss():
            await self.pool.execute(
                "INSERT INTO app_state (key, value) VALUES ($1, $2) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()",
                key,
                value,
            )

    async def advance_position(self, key: str, position: int) -> None:
        """Move a consumer's position forward (never back, even if two writers race)."""
        with unavailable_on_connection_loss():
            await self.pool.execute(
                "INSERT INTO app_state (key, value) VALUES ($1, to_jsonb($2::bigint)) "
                "ON CONFLICT (key) DO UPDATE SET value = to_jsonb(greatest("
                "(app_state.value)::bigint, $2::bigint)), updated_at = now()",
                key,
                position,
            )
