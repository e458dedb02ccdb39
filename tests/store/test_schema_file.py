"""store/schema.sql is the schema a fresh migrate makes: when a migration or a repeatable file
changes without it, this fails and says what to run."""

from __future__ import annotations

import difflib

import pytest

from store.database import connect
from store.schema import SCHEMA_FILE, dump_schema, pg_dump_major


async def test_schema_sql_is_what_a_fresh_migrate_makes(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        server_major = int(await conn.fetchval("SHOW server_version_num")) // 10000
    finally:
        await conn.close()
    if server_major != await pg_dump_major():
        pytest.skip(f"schema.sql is made on the embedded PostgreSQL, not on {server_major}")

    dumped = await dump_schema(database_url)  # a clone of the session's freshly migrated template
    committed = SCHEMA_FILE.read_text()
    if dumped != committed:
        diff = difflib.unified_diff(
            committed.splitlines(keepends=True),
            dumped.splitlines(keepends=True),
            "store/schema.sql",
            "a fresh migrate",
        )
        pytest.fail(
            "store/schema.sql is stale: run `make schema` and commit it\n" + "".join(diff)[:6000]
        )
