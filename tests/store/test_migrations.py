"""Migrations: the numbered ones and the repeatable functions applied once, recorded, and a
schema this code cannot serve refused."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from store import migrations
from store.database import connect, with_database
from store.errors import SchemaTooNewError
from store.migrations import (
    Migration,
    Repeatable,
    available_migrations,
    available_repeatables,
    check_schema,
    migrate,
    schema_version,
)

# What the migrations before the baseline recorded: a database they built has this schema.
PRE_BASELINE = [
    (1, "events"),
    (2, "agent_runtime"),
    (3, "repo_config"),
    (4, "dispatch"),
    (5, "agent_logs"),
    (6, "steering"),
    (7, "one_projection"),
    (8, "claims_in_batches"),
]


@pytest.fixture
async def empty_database(pg_server_dsn: str) -> AsyncIterator[str]:
    """A database nothing has migrated yet."""
    name = "unmigrated_check"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
        yield with_database(pg_server_dsn, name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def applied_at(conn: asyncpg.Connection) -> dict[str, object]:
    rows = await conn.fetch("SELECT name, applied_at FROM schema_repeatables")
    return {row["name"]: row["applied_at"] for row in rows}


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
        monkeypatch.setattr(migrations, "available_migrations", lambda: [*shipped, added, broken])
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(conn)
        # The good one stays applied and recorded; the broken one left neither table nor row.
        assert await schema_version(conn) == added.version
        assert await conn.fetchval("SELECT to_regclass('added_t') IS NOT NULL")
        assert not await conn.fetchval("SELECT to_regclass('broken_t') IS NOT NULL")

        monkeypatch.setattr(migrations, "available_migrations", lambda: [*shipped, added])
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


async def test_an_unmigrated_database_is_reported(empty_database: str) -> None:
    conn = await connect(empty_database)
    try:
        with pytest.raises(SchemaTooNewError, match="run `conductor-e migrate`"):
            await check_schema(conn)
    finally:
        await conn.close()


async def test_replicas_migrating_at_once_apply_each_thing_once(empty_database: str) -> None:
    conns = [await connect(empty_database) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(conn) for conn in conns))
        assert sorted(len(applied) for applied in results) == [0, 0, len(available_migrations())]
        # The repeatable files were applied by one of them, in one transaction.
        stamps = await applied_at(conns[0])
        assert sorted(stamps) == sorted(r.name for r in available_repeatables())
        assert len(set(stamps.values())) == 1
        await check_schema(conns[0])
    finally:
        for conn in conns:
            await conn.close()


async def test_every_function_lives_in_a_repeatable_file(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        defined = await conn.fetch(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' ORDER BY 1"
        )
    finally:
        await conn.close()
    texts = "".join(r.sql for r in available_repeatables())
    names = [row["proname"] for row in defined]
    assert names, "no functions at all"
    assert [n for n in names if f"CREATE OR REPLACE FUNCTION {n}(" not in texts] == []
    # ... and no function or trigger in a numbered migration: those hold DDL and data only.
    body = re.compile(r"CREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE|TRIGGER)", re.IGNORECASE)
    assert [m.name for m in available_migrations() if body.search(m.sql)] == []


async def test_a_database_the_migrations_before_the_baseline_built_is_at_the_baseline(
    database_url: str,
) -> None:
    # Such a database (a `make run` data directory) records 0001-0008 and has no record of
    # the repeatable files; its schema is the baseline's, functions included (pg_dump of both
    # compared when the baseline was made).
    conn = await connect(database_url)
    try:
        await conn.execute("DELETE FROM schema_version; DROP TABLE schema_repeatables")
        await conn.executemany(
            "INSERT INTO schema_version (version, name) VALUES ($1, $2)", PRE_BASELINE
        )
        behind = r"its functions are not this .*: run `conductor-e migrate`"
        with pytest.raises(SchemaTooNewError, match=behind):
            await check_schema(conn)

        assert await migrate(conn) == []
        assert sorted(await applied_at(conn)) == sorted(r.name for r in available_repeatables())
        await check_schema(conn)
        assert await schema_version(conn) == PRE_BASELINE[-1][0]
    finally:
        await conn.close()


async def test_a_database_from_before_the_baseline_is_refused_with_what_to_do(
    database_url: str,
) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute("DELETE FROM schema_version")
        await conn.executemany(
            "INSERT INTO schema_version (version, name) VALUES ($1, $2)", PRE_BASELINE[:5]
        )
        for check in (migrate, check_schema):
            with pytest.raises(SchemaTooNewError, match="from before the baseline"):
                await check(conn)
    finally:
        await conn.close()


async def test_a_changed_repeatable_file_is_applied_and_until_then_refused(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = available_repeatables()
    last = shipped[-1]
    changed = Repeatable(
        last.name,
        last.sql + "CREATE OR REPLACE FUNCTION conductor_added() RETURNS int "
        "LANGUAGE sql AS $$ SELECT 1 $$;\n",
    )
    monkeypatch.setattr(migrations, "available_repeatables", lambda: [*shipped[:-1], changed])
    conn = await connect(database_url)
    try:
        before = await applied_at(conn)
        with pytest.raises(SchemaTooNewError, match=f"not this Conductor-E's \\({last.name}\\)"):
            await check_schema(conn)

        assert await migrate(conn) == []
        assert await conn.fetchval("SELECT conductor_added()") == 1
        await check_schema(conn)
        after = await applied_at(conn)
        assert all(after[name] > before[name] for name in before)  # all of them, together

        await migrate(conn)
        assert await applied_at(conn) == after  # unchanged: not applied again
    finally:
        await conn.close()


async def test_a_numbered_migration_makes_the_functions_due_again(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A migration that must drop a function (to change what it returns, or a table it
    # returns) gets it back from its repeatable file.
    shipped = available_migrations()
    dropping = Migration(
        shipped[-1].version + 1,
        "drop_dispatch",
        "DROP FUNCTION conductor_dispatch(text, text, jsonb, text[], boolean)",
    )
    monkeypatch.setattr(migrations, "available_migrations", lambda: [*shipped, dropping])
    conn = await connect(database_url)
    try:
        assert await migrate(conn) == [dropping]
        assert await conn.fetchval("SELECT to_regproc('conductor_dispatch') IS NOT NULL")
        await check_schema(conn)
    finally:
        await conn.close()
