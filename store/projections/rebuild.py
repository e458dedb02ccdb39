"""The rebuild in one pass: the events read once (COPY), folded in memory, each table written by
one COPY, in one transaction under the append lock."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg

from store.locks import APPEND_LOCK
from store.projections.event_lines import events_query
from store.projections.fold import Replay
from store.projections.pgtext import copy_escape, copy_unescape, split_part
from store.projections.rows import IssueUsageKey, Tie, UsageSums, merge_usage

# --- reading and writing -----------------------------------------------------------------------
PROJECTION_TABLES = (
    "issues",
    "agents",
    "usage_daily",
    "usage_by_issue",
    "execution_logs",
    "pending_pr_events",
    "repo_configs",
)


async def rebuild_projections(
    conn: asyncpg.Connection,
    *,
    batch_size: int = 20_000,
    progress: Callable[[int, int, float], None] | None = None,
) -> int:
    """Recreate every projection from the events, in one transaction.

    Appends wait while it runs (it holds the append lock), so the rebuilt rows match the events
    exactly. The events are read once, in position order, `batch_size` positions at a time, and
    folded in memory by store.projections.fold (the plpgsql projection, mirrored; it holds the
    projection tables, not the events); then each table is written by one COPY. Interrupting
    it (cancel, Ctrl-C, a crash) rolls back to the projections as they were. `progress(done, total,
    elapsed_seconds)` is called after each batch read. Returns the number of events replayed.
    """
    started = time.monotonic()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        head = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
        total = int(await conn.fetchval("SELECT count(*) FROM events"))
        await check_tables(conn)
        await conn.execute(f"TRUNCATE {', '.join(PROJECTION_TABLES)}")

        def read(done: int) -> None:
            if progress is not None:
                progress(done, total, time.monotonic() - started)

        fold = await read_events(conn, head, batch_size=batch_size, progress=read)
        await write_projections(conn, fold)
    return fold.events


async def projection_snapshot(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection row, ordered; used to compare a rebuild with the live projections."""
    snapshot = {}
    for table in PROJECTION_TABLES:
        rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4")
        snapshot[table] = [tuple(row.values()) for row in rows]
    return snapshot


async def read_events(
    conn: asyncpg.Connection, head: int, *, batch_size: int, progress: Callable[[int], None]
) -> Replay:
    """Fold the events up to `head` (in the caller's transaction), one COPY per `batch_size`
    positions; `progress(events so far)` after each. A cancellation lands between them."""
    # The fold compares timestamps as their text: ISO in UTC orders as the instants do. LOCAL:
    # for this transaction only.
    await conn.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO'")
    fold = Replay()
    rest = b""

    async def fold_lines(chunk: bytes) -> None:
        nonlocal rest
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        lines = data[:cut].decode().split("\n")
        lines.pop()  # after the last newline
        fold.apply_lines(lines)

    after = 0
    while after < head:
        upto = min(after + batch_size, head)
        await conn.copy_from_query(events_query(after, upto), output=fold_lines)
        assert not rest, "COPY ended inside a line"
        progress(fold.events)
        await asyncio.sleep(0)
        after = upto
    return fold


async def resolve_ties(conn: asyncpg.Connection, fold: Replay) -> None:
    """Settle every Tie by PostgreSQL's own order of the stream ids (`ORDER BY stream_id`)."""
    ties = {key[0] for key in fold.usage_by_issue if isinstance(key[0], Tie)}
    ties.update(run.issue_number for run in fold.runs.values() if isinstance(run.issue_number, Tie))
    if not ties:
        return
    names = sorted({name for tie in ties for name in tie.candidates})
    ordered = await conn.fetch(
        "SELECT s FROM unnest($1::text[]) AS s ORDER BY s", [copy_unescape(n) for n in names]
    )
    rank = {copy_escape(row[0]): i for i, row in enumerate(ordered)}
    winner = {tie: min(tie.candidates, key=rank.__getitem__) for tie in ties}
    for run in fold.runs.values():
        if isinstance(run.issue_number, Tie):
            run.issue_number = split_part(winner[run.issue_number], "#", 2)
    settled: dict[IssueUsageKey, UsageSums] = {}
    for (stream, day, agent_id, model), sums in fold.usage_by_issue.items():
        key = (winner[stream] if isinstance(stream, Tie) else stream, day, agent_id, model)
        if key in settled:
            merge_usage(settled[key], sums)
        else:
            settled[key] = sums
    fold.usage_by_issue = settled


def _usage_rows(table: dict[Any, UsageSums]) -> Iterable[Sequence[str]]:
    for key, sums in table.items():
        yield (*key, *map(str, sums))


_COLUMNS = {
    "issues": (
        "stream_id, repo, number, title, url, labels, priority, priority_rank, state, assignee, "
        "reviewer, attempt, pr_number, review_state, escalated, human_gate, approved_at, "
        "state_since, last_activity, last_event_type, position, held, held_by, held_reason, "
        "held_at, requeued_from"
    ),
    "agents": (
        "agent_id, status, current_issue, last_heartbeat, last_event_at, details, position, "
        "paused, paused_by, paused_reason, paused_at"
    ),
    "usage_daily": (
        "day, agent_id, repo, model, events, input_tokens, output_tokens, cache_read_tokens, "
        "cache_creation_tokens, cache_creation_1h_tokens, cost_usd, reported_events, position"
    ),
    "usage_by_issue": (
        "stream_id, day, agent_id, model, events, input_tokens, output_tokens, "
        "cache_read_tokens, cache_creation_tokens, cache_creation_1h_tokens, cost_usd, "
        "reported_events, position"
    ),
    "execution_logs": (
        "id, stream_id, repo, issue_number, agent_id, model, status, steps, log_lines, "
        "total_cost_usd, total_turns, input_tokens, output_tokens, cache_read_tokens, "
        "cache_creation_tokens, duration_api_ms, pr_number, started_at, completed_at, version, "
        "position"
    ),
    "pending_pr_events": "position, stream_id, repo, pr_number, type, data, recorded_at",
    "repo_configs": (
        "repo, repo_name, present, config, sha, route_key, error, error_sha, changed_at, position"
    ),
}


async def check_tables(conn: asyncpg.Connection) -> None:
    """Refuse to rebuild a table with a column the fold does not write: a migration that adds
    one must teach this module what conductor_project puts there (else it would hold its
    default)."""
    rows = await conn.fetch(
        "SELECT attrelid::regclass::text AS table_name, attname FROM pg_attribute "
        "WHERE attrelid = ANY($1::regclass[]) AND attnum > 0 AND NOT attisdropped",
        list(_COLUMNS),
    )
    unknown = sorted(
        f"{row['table_name']}.{row['attname']}"
        for row in rows
        if row["attname"] not in _COLUMNS[row["table_name"]].split(", ")
    )
    if unknown:
        raise RuntimeError(
            f"store/projections/fold.py does not know the column(s) {', '.join(unknown)}: teach "
            "it what conductor_project writes there before rebuilding"
        )


def table_rows(fold: Replay) -> dict[str, Iterable[Sequence[str]]]:
    """Every projection table's rows, as COPY text fields in `_COLUMNS` order."""
    return {
        "issues": (issue.row() for issue in fold.issues.values()),
        "agents": (agent.row() for agent in fold.agents.values()),
        "usage_daily": _usage_rows(fold.usage_daily),
        "usage_by_issue": _usage_rows(fold.usage_by_issue),
        "execution_logs": (run.row() for run in fold.runs.values()),
        "pending_pr_events": fold.pending.values(),
        "repo_configs": fold.repo_configs.values(),
    }


async def write_projections(conn: asyncpg.Connection, fold: Replay) -> None:
    """Write every table the fold kept, one COPY each (the tables are empty)."""
    await resolve_ties(conn, fold)
    for table, rows in table_rows(fold).items():
        text = "".join("\t".join(row) + "\n" for row in rows)
        if text:
            columns = _COLUMNS[table].split(", ")
            await conn.copy_to_table(table, source=io.BytesIO(text.encode()), columns=columns)
