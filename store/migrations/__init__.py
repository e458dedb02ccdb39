"""The schema, applied by `migrate`: the numbered migrations here (tables, indexes and data;
append-only from the first release), then the repeatable files that define every function
(`store/<package>/sql/*.sql`, beside the Python that calls them). store/schema.sql shows the
result in one file.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

import asyncpg

from store.errors import SchemaTooNewError
from store.locks import MIGRATION_LOCK

log = logging.getLogger(__name__)

# The packages of store/ whose sql/ folder holds repeatable files, in the order they are
# applied (each folder's files by name). A function a file calls need not exist before it
# (plpgsql resolves names when it runs), but a SQL-language body is checked at creation.
REPEATABLE_PACKAGES = ("projections", "events", "dispatch")

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS schema_repeatables (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now());
"""

_HOW_TO_MIGRATE = (
    "run `conductor-e migrate` with the same DATABASE_URL, or on Kubernetes let the Helm "
    "chart's migration hook do it (the `<release>-migrate` Job that `helm install` and "
    "`helm upgrade` run while `migrations.enabled` is true)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class Repeatable:
    """A file of `CREATE OR REPLACE` functions, named by its path under store/."""

    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The numbered SQL files shipped in store/migrations, in order."""
    found = []
    for entry in resources.files("store.migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    return found


def available_repeatables() -> list[Repeatable]:
    """The repeatable SQL files shipped in store/<package>/sql, in the order they are applied."""
    found: list[Repeatable] = []
    for package in REPEATABLE_PACKAGES:
        folder = resources.files(f"store.{package}").joinpath("sql")
        files = sorted(
            (e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name
        )
        found.extend(Repeatable(f"{package}/sql/{e.name}", e.read_text()) for e in files)
    return found


async def schema_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def stale_repeatables(conn: asyncpg.Connection, shipped: list[Repeatable]) -> list[str]:
    """The shipped repeatable files this database does not hold as they are: never applied,
    changed since, or due again after a numbered migration."""
    recorded: dict[str, str] = {}
    if await conn.fetchval("SELECT to_regclass('schema_repeatables') IS NOT NULL"):
        rows = await conn.fetch("SELECT name, checksum FROM schema_repeatables")
        recorded = {row["name"]: row["checksum"] for row in rows}
    return [r.name for r in shipped if recorded.get(r.name) != r.checksum]


def _refuse_unknown(current: int, migrations: list[Migration]) -> None:
    """Refuse a schema this code cannot take forward: newer than it, or older than its first
    (baseline) migration."""
    latest = migrations[-1].version if migrations else 0
    baseline = migrations[0].version if migrations else 0
    if current > latest:
        raise SchemaTooNewError(
            f"the database schema is at version {current}, newer than this Conductor-E "
            f"knows ({latest}); upgrade Conductor-E instead of running an older one"
        )
    if 0 < current < baseline:
        raise SchemaTooNewError(
            f"the database schema is at version {current}, from before the baseline "
            f"({baseline}) that folded the first migrations into one; no release ran those, so "
            "this is a development database: start it afresh (for the embedded PostgreSQL, "
            "remove the `postgres` folder in CONDUCTOR_DATA_DIR), or first migrate it to "
            f"{baseline} with a Conductor-E from before the baseline"
        )


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply the numbered migrations this database lacks, each in its own transaction; then,
    when any repeatable file is stale, all of them, in one transaction.

    A numbered migration marks every repeatable file stale in its own transaction, so a
    migration that drops a function (or what it depends on) sees it recreated, even after a
    crash in between. Serialised across processes with an advisory lock: replicas starting
    together apply each thing once. Refuses a database whose schema is newer than this code, or
    older than its baseline. Returns the numbered migrations applied.
    """
    migrations = available_migrations()
    repeatables = available_repeatables()
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(_BOOKKEEPING)
        current = await schema_version(conn)
        _refuse_unknown(current, migrations)
        applied = []
        for migration in migrations:
            if migration.version <= current:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
                await conn.execute("DELETE FROM schema_repeatables")
            log.info("applied migration %04d_%s", migration.version, migration.name)
            applied.append(migration)
        if await stale_repeatables(conn, repeatables):
            async with conn.transaction():
                for repeatable in repeatables:
                    await conn.execute(repeatable.sql)
                await conn.executemany(
                    "INSERT INTO schema_repeatables (name, checksum) VALUES ($1, $2) "
                    "ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, "
                    "applied_at = now()",
                    [(r.name, r.checksum) for r in repeatables],
                )
            log.info("applied the functions of %s", ", ".join(r.name for r in repeatables))
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def check_schema(conn: asyncpg.Connection) -> None:
    """Refuse to serve a database that is behind or ahead of this code: its numbered migrations,
    or its functions (a repeatable file not applied as this code ships it)."""
    migrations = available_migrations()
    latest = migrations[-1].version if migrations else 0
    current = await schema_version(conn)
    _refuse_unknown(current, migrations)
    if current < latest:
        raise SchemaTooNewError(
            f"the database schema is at version {current}, this Conductor-E needs {latest}: "
            + _HOW_TO_MIGRATE
        )
    stale = await stale_repeatables(conn, available_repeatables())
    if stale:
        raise SchemaTooNewError(
            f"the database schema is at version {current}, but its functions are not this "
            f"Conductor-E's ({', '.join(stale)}): " + _HOW_TO_MIGRATE
        )
