"""Migration 0002_costs on a database that already holds usage: the re-derived projections
equal a rebuild from the events."""

from __future__ import annotations

import uuid

import asyncpg

from store.database import available_migrations, connect, migrate, with_database
from store.projections import projection_snapshot, rebuild_projections


async def test_0002_rederives_existing_usage(pg_server_dsn: str) -> None:
    name = f"t_costs_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    conn = await connect(with_database(pg_server_dsn, name))
    try:
        first = available_migrations()[0]
        assert first.version == 1
        # The database as 0001 left it, with usage recorded through the 0001 projection.
        await conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(first.sql)
        await conn.execute("INSERT INTO schema_version (version, name) VALUES (1, $1)", first.name)
        usage = [
            {
                "agentId": "dev-e-1",
                "model": "claude-haiku-4-5",
                "inputTokens": 10,
                "outputTokens": 2,
                "costUsd": 0.5,
                "repo": "a/b",
                "issueNumber": 1,
                "cacheCreationTokens": 9,
                "cacheCreation1hTokens": 4,
            },
            {
                "agentId": "dev-e-1",
                "model": "claude-haiku-4-5",
                "inputTokens": 5,
                "outputTokens": 1,
                "repo": "a/b",
                "issueNumber": 1,
            },
            {
                "agentId": "dev-e-2",
                "model": "claude-sonnet-4-5",
                "inputTokens": 7,
                "outputTokens": 3,
                "costUsd": 0.25,
            },
        ]
        for data in usage:
            await conn.execute(
                "SELECT conductor_append($1, NULL, NULL, ARRAY['TOKEN_USAGE'], ARRAY[$2::jsonb], "
                "ARRAY['{}'::jsonb])",
                data["agentId"],
                data,
            )

        applied = await migrate(conn)

        assert [m.name for m in applied] == ["costs"]
        migrated = await projection_snapshot(conn)
        await rebuild_projections(conn)
        assert await projection_snapshot(conn) == migrated
        row = await conn.fetchrow(
            "SELECT events, reported_events, cache_creation_1h_tokens FROM usage_by_issue "
            "WHERE stream_id = 'a/b#1'"
        )
        assert tuple(row.values()) == (2, 1, 4)
    finally:
        await conn.close()
        admin = await asyncpg.connect(pg_server_dsn)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
