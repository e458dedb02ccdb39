"""Migrations: applied once, recorded, and a newer schema is refused."""

from __future__ import annotations

import asyncpg
import pytest

from store import database
from store.database import (
    Migration,
    available_migrations,
    check_schema,
    connect,
    migrate,
    schema_version,
)
from store.errors import SchemaTooNewError


async def test_migrating_twice_applies_nothing_new(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        assert await migrate(conn) == []
        assert await schema_version(conn) == available_migrations()[-1].version
        await check_schema(conn)
    finally:
        await conn.close()


async def test_a_new_migration_is_applied_and_a_failing_one_changes_nothing(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = available_migrations()
    latest = shipped[-1].version
    added = Migration(latest + 1, "added", "CREATE TABLE added_t (x integer)")
    broken = Migration(latest + 2, "broken", "CREATE TABLE broken_t (x integer); SELECT 1/0")
    conn = await connect(database_url)
    try:
        monkeypatch.setattr(database, "available_migrations", lambda: [*shipped, added, broken])
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(conn)
        # The good one stays applied and recorded; the broken one left neither table nor row.
        assert await schema_version(conn) == added.version
        assert await conn.fetchval("SELECT to_regclass('added_t') IS NOT NULL")
        assert not await conn.fetchval("SELECT to_regclass('broken_t') IS NOT NULL")

        monkeypatch.setattr(database, "available_migrations", lambda: [*shipped, added])
        assert await migrate(conn) == []
    finally:
        await conn.close()


async def test_a_schema_newer_than_the_code_is_refused(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute("INSERT INTO schema_version (version, name) VALUES (9999, 'future')")
        with pytest.raises(SchemaTooNewError, match="newer than this Conductor-E"):
            await migrate(conn)
        with pytest.raises(SchemaTooNewError, match="upgrade Conductor-E"):
            await check_schema(conn)
    finally:
        await conn.close()


async def test_an_unmigrated_database_is_reported(pg_server_dsn: str) -> None:
    import asyncpg

    from store.database import with_database

    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute("DROP DATABASE IF EXISTS unmigrated_check")
        await admin.execute("CREATE DATABASE unmigrated_check")
        conn = await connect(with_database(pg_server_dsn, "unmigrated_check"))
        try:
            with pytest.raises(SchemaTooNewError, match="run `conductor-e migrate`"):
                await check_schema(conn)
        finally:
            await conn.close()
    finally:
        await admin.execute("DROP DATABASE IF EXISTS unmigrated_check WITH (FORCE)")
        await admin.close()
