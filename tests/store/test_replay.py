"""The one-pass rebuild (store/projections/fold.py) writes, byte for byte, what the plpgsql
projection wrote.

Random sequences of events - every type `conductor_project` treats apart, with absent, null,
odd and decimal values - are appended through the real store (`EventStore.append`; appends
drawn together go concurrently, so they share a transaction and a `recorded_at`, which makes
ties in `conductor_issue_of`). An append PostgreSQL refuses leaves nothing, as in production.
Then each projection table is read as text (`SELECT t::text`), rebuilt, and read again: the
two must be identical, table by table.

What the fold imitates itself (`sql_int`, COPY's escapes, `jsonb_concat`) is checked against
PostgreSQL's own.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from store.database import connect
from store.errors import StoreError
from store.events import EventStore, NewEvent
from store.projections import PROJECTION_TABLES, rebuild_projections
from store.projections.fold import Replay
from store.projections.pgtext import copy_escape, copy_unescape, jsonb_concat, sql_int
from store.projections.rebuild import table_rows

# A small world, so events meet: three issues (#3 of the same repo spelled otherwise, which
# lower() matches), PRs 2 (also an issue's number) and 7, two agents and an instance of one.
ISSUES = ("acme/app#1", "acme/app#2", "Acme/App#3")
# Odd but issue streams; the last has a backslash and a tab, which COPY escapes.
ODD_ISSUES = ("acme/app#x", "acme/app#03", "a/b#1#2", "beta/svc#1", "we\\ird/re\tpo#4")
REPOS = ("acme/app", "Acme/App", "beta/svc")
PRS = (2, 7)
AGENTS = ("dev-e-1", "dev-e-1/pod-a", "dev-e-2", "ops\\bot")
RUNS = ("run-1", "run-2")

# --- values -------------------------------------------------------------------------------------
# A Decimal is stored as the JSON number it spells (`1.50`, not 1.5): see `encode` below.
NUMBER_TEXTS = st.sampled_from(
    [Decimal("1.50"), Decimal("0.10"), Decimal("1E+2"), Decimal("-0.0"), Decimal("2.5")]
)
COSTS = st.one_of(
    st.sampled_from([0, 0.25, 1e-7, 12.5, "0.5", " 3 ", "NaN", "Infinity", "-Infinity", None]),
    NUMBER_TEXTS,
    st.floats(min_value=0, max_value=100, allow_nan=False),
)
TOKENS = st.one_of(st.integers(0, 10_000), st.sampled_from(["12", " 7", "+3", "1_000", None]))
PR_VALUES = st.one_of(
    st.sampled_from(PRS),
    st.sampled_from(["7", " 2 ", "+2", "0x7", "0o10", "1_0", -3, 1.5, "seven", None, 0]),
)
LABELS = st.one_of(
    st.none(), st.lists(st.sampled_from(["bug", "held", "prio:high", "ünïcode"]), max_size=3)
)
JSON_BITS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    NUMBER_TEXTS,
    st.text(alphabet='ab "\\\n/é', max_size=5),
    st.lists(st.integers(0, 3), max_size=3),
    st.fixed_dictionaries({"name": st.sampled_from(["read", "edit"]), "ok": st.booleans()}),
)
ISSUE_STREAMS = st.sampled_from(ISSUES * 6 + ODD_ISSUES)
PR_STREAMS = st.builds(lambda r, n: f"{r}!{n}", st.sampled_from(REPOS), st.sampled_from(PRS))
ANY_STREAM = st.one_of(
    ISSUE_STREAMS,
    PR_STREAMS,
    st.sampled_from(AGENTS),
    st.sampled_from(["execution-log#run-1", "repo:acme/app", "conductor-e:coordination", "x!1"]),
)
# The issue lifecycle, the usual steps more often than the rest.
LIFECYCLE = st.sampled_from(
    ("ISSUE_APPROVED", "ISSUE_ASSIGNED", "PR_CREATED", "REVIEW_ASSIGNED", "ISSUE_REQUEUED",
     "ISSUE_WITHDRAWN") * 3
    + ("ISSUE_UNASSIGNED", "WORK_STARTED", "BRANCH_CREATED", "CI_PASSED", "CI_FAILED",
       "REVIEW_PASSED", "REVIEW_DISPUTED", "MERGED", "DEPLOYED_STAGING", "SMOKE_PASSED",
       "SMOKE_FAILED", "DEPLOYED_PRODUCTION", "VERIFIED", "E2E_PASSED", "E2E_FAILED",
       "ISSUE_DONE", "HUMAN_GATE_TRIGGERED", "HUMAN_GATE_REMINDER", "ESCALATED",
       "PRIORITY_CHANGED", "AGENT_STUCK", "MERGE_REQUESTED", "MERGE_BLOCKED")
)  # fmt: skip


def fields(**optional: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A payload whose every field may be absent."""
    return st.fixed_dictionaries({}, optional=optional)


ISSUE_DATA = fields(
    title=st.sampled_from(["Fix it", "", 'Ünïcode "quoted"', "tab\tnew\nline\\"]),
    url=st.sampled_from(["https://example.com/1", None]),
    labels=LABELS,
    priority=st.sampled_from(["critical", "high", "normal", "urgent", None]),
    prNumber=PR_VALUES,
    reason=st.sampled_from(["stuck", None]),
    actor=st.sampled_from(["alice", None]),
)
# What a heartbeat says it works on: mostly an issue of the world, sometimes nothing it can name.
CURRENT = st.one_of(
    st.sampled_from([("acme/app", 1), ("acme/app", 2), ("Acme/App", 3)]),
    st.sampled_from([("", 0), ("acme/app", "0"), ("", 2), (None, None), ("acme/app", None)]),
)
HEARTBEAT_DATA = fields(
    status=st.sampled_from(["working", "idle", None]),
    providers=st.lists(JSON_BITS, max_size=2),
    costUsd=COSTS,
)
USAGE_DATA = fields(
    repo=st.sampled_from([*REPOS, "ACME/APP", "", None]),
    issueNumber=st.sampled_from([1, 2, 3, 7, 0, "2", 2.0, -1, None]),
    model=st.sampled_from(["claude-opus-4-6", "", None]),
    inputTokens=TOKENS,
    outputTokens=TOKENS,
    cacheReadTokens=TOKENS,
    cacheCreationTokens=TOKENS,
    cacheCreation1hTokens=st.one_of(TOKENS, st.sampled_from([-5, 2.5, 10**6, Decimal("0.5")])),
    costUsd=COSTS,
)
RUN_DATA = fields(
    repo=st.sampled_from([*REPOS, "", None]),
    issueNumber=st.sampled_from([1, 2, 3, 7, 0, None]),
    model=st.sampled_from(["claude-opus-4-6", None]),
    status=st.sampled_from(["running", "failed", "success", None]),
    steps=st.one_of(JSON_BITS, st.lists(JSON_BITS, max_size=2)),
    step=JSON_BITS,
    entries=st.one_of(JSON_BITS, st.lists(JSON_BITS, max_size=3)),
    totalCostUsd=COSTS,
    totalTurns=TOKENS,
    totalInputTokens=TOKENS,
    totalOutputTokens=TOKENS,
    cacheReadTokens=TOKENS,
    cacheCreationTokens=TOKENS,
    durationApiMs=TOKENS,
    prNumber=PR_VALUES,
)
REPO_CONFIG_DATA = fields(
    present=st.sampled_from([True, False, "yes", "t", None]),
    config=st.one_of(st.none(), st.fixed_dictionaries({"stack": st.sampled_from(["node", "go"])})),
    sha=st.sampled_from(["abc123", None]),
    routeKey=st.sampled_from(["node", None]),
    error=st.sampled_from(["bad yaml", None]),
)
STEERING_DATA = fields(
    labels=LABELS,
    reason=st.sampled_from(["wait", None]),
    actor=st.sampled_from(["bob", None]),
)
RUN_TYPES = st.sampled_from(
    ("EXECUTION_LOG_STARTED", "EXECUTION_LOG_STEP", "EXECUTION_LOG_STEP", "EXECUTION_LOG_LINES",
     "EXECUTION_LOG_COMPLETED", "EXECUTION_LOG_PAUSED")  # the last: of the family, ignored
)  # fmt: skip
KINDS = st.sampled_from(
    ("lifecycle",) * 8
    + ("heartbeat",) * 4
    + ("usage", "usage", "run", "run", "repo_config", "steer_issue", "steer_agent")
    + ("pr_stream", "anything")
)


@st.composite
def events(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    """(stream, type, data): mostly on the stream the type belongs to, sometimes anywhere."""
    kind = draw(KINDS)
    agent = draw(st.sampled_from(AGENTS))
    named = {"agentId": agent} if draw(st.integers(0, 9)) else {}  # an agentless one, rarely
    if kind == "lifecycle":
        stream, event_type = draw(ISSUE_STREAMS), draw(LIFECYCLE)
        data = {**named, **draw(ISSUE_DATA)}
    elif kind == "heartbeat":
        stream, event_type, data = agent, "HEARTBEAT", {"agentId": agent, **draw(HEARTBEAT_DATA)}
        for key, value in zip(("currentRepo", "currentIssue"), draw(CURRENT), strict=True):
            if value is not None or draw(st.booleans()):  # a None is sent as null or left out
                data[key] = value
    elif kind == "usage":
        stream = draw(st.one_of(st.sampled_from(AGENTS), ISSUE_STREAMS))
        event_type, data = "TOKEN_USAGE", {"agentId": agent, **draw(USAGE_DATA)}
    elif kind == "run":
        run = draw(st.sampled_from(RUNS))
        stream, event_type = f"execution-log#{run}", draw(RUN_TYPES)
        data = {"executionLogId": run, **named, **draw(RUN_DATA)}
    elif kind == "repo_config":
        repo = draw(st.sampled_from(REPOS))
        event_type = draw(st.sampled_from(["REPO_CONFIG_CHANGED", "REPO_CONFIG_INVALID"]))
        stream, data = f"repo:{repo.lower()}", {"repo": repo, **draw(REPO_CONFIG_DATA)}
    elif kind == "steer_issue":
        stream = draw(ISSUE_STREAMS)
        event_type = draw(st.sampled_from(["ISSUE_HELD", "ISSUE_UNHELD"]))
        data = draw(STEERING_DATA)
    elif kind == "steer_agent":
        stream = agent
        event_type = draw(st.sampled_from(["AGENT_PAUSED", "AGENT_RESUMED"]))
        data = {"agentId": agent, **draw(STEERING_DATA)}
    elif kind == "pr_stream":
        stream = draw(PR_STREAMS)
        event_type = draw(st.sampled_from(["MERGE_REQUESTED", "REVIEW_PASSED", "REVIEW_DISPUTED"]))
        data = {**named, "note": draw(JSON_BITS), **draw(ISSUE_DATA)}
    else:  # any type on any stream
        stream = draw(ANY_STREAM)
        event_type = draw(st.one_of(LIFECYCLE, st.sampled_from(["HEARTBEAT", "X_UNKNOWN"])))
        data = {"agentId": agent, **draw(ISSUE_DATA), **draw(HEARTBEAT_DATA)}
    return stream, event_type, {"type": event_type, **data}


# An append: its events, and whether it links a pending PR event (metadata.linkedFrom).
Append = tuple[list[tuple[str, str, dict[str, Any]]], Any]
LINKS = st.one_of(
    st.none(),
    st.none(),
    st.integers(0, 5),  # the n-th PR-stream event appended so far (or none there)
    st.sampled_from(["as text", "null"]),
)
APPENDS: st.SearchStrategy[Append] = st.tuples(st.lists(events(), min_size=1, max_size=2), LINKS)
# The appends of a group are sent at once: the store writes the first alone and the others
# together, in one transaction (one recorded_at).
GROUPS = st.lists(st.lists(APPENDS, min_size=1, max_size=3), min_size=10, max_size=40)


# --- storing them ---------------------------------------------------------------------------
def encode(value: Any) -> str:
    """json.dumps, but a Decimal becomes the JSON number it spells (`1.50` stays `1.50`), as a
    client's JSON may hold it."""

    def mark(item: Any) -> str:
        if isinstance(item, Decimal):
            return f"§num§{item}§"
        raise TypeError(type(item).__name__)

    return re.sub(r'"§num§([^§]*)§"', r"\1", json.dumps(value, default=mark, ensure_ascii=False))


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=encode, decoder=json.loads, schema="pg_catalog")


@pytest.fixture
async def decimal_store(database_url: str) -> AsyncIterator[EventStore]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8, init=_init)
    assert pool is not None
    yield EventStore(pool)
    await pool.close()


async def append(store: EventStore, item: Append, pr_positions: list[int]) -> None:
    (first, *more), link = item
    stream = first[0]
    metadata: dict[str, Any] = {}
    if isinstance(link, int):
        metadata["linkedFrom"] = pr_positions[link % len(pr_positions)] if pr_positions else 10**9
    elif link == "as text" and pr_positions:
        metadata["linkedFrom"] = str(pr_positions[-1])
    elif link == "null":
        metadata["linkedFrom"] = None
    if any(data.get("actor") == "alice" for _, _, data in item[0]):
        metadata["actor"] = "carol"  # the metadata's actor wins over the data's
    batch = [NewEvent(event_type, data, metadata) for _, event_type, data in [first, *more]]
    try:
        result = await store.append(stream, batch)
    except StoreError:
        return  # PostgreSQL refused it (a cast failed): nothing was stored, as in production
    if "!" in stream:
        pr_positions.extend(range(result.first_position, result.last_position + 1))


async def tables_as_text(conn: asyncpg.Connection) -> dict[str, list[str]]:
    return {
        table: [row[0] for row in await conn.fetch(f"SELECT t::text FROM {table} t ORDER BY 1")]
        for table in PROJECTION_TABLES
    }


def one(stream: str, event_type: str, link: Any = None, **data: Any) -> Append:
    return ([(stream, event_type, {"type": event_type, **data})], link)


# One hand-written tour through the special cases, run first, whatever hypothesis draws.
BEAT = one("dev-e-9", "HEARTBEAT", agentId="dev-e-9")  # goes alone: the appends after it share
TOUR: list[list[Append]] = [
    [one("acme/app#1", "ISSUE_APPROVED", title="T", labels=["a"], priority="high")],
    [one("acme/app#2", "ISSUE_APPROVED", labels=None, priority="urgent")],
    [one("acme/app#1", "ISSUE_ASSIGNED", agentId="dev-e-1")],
    [one("acme/app#1", "CI_PASSED", prNumber=" 0x7 ")],
    [one("acme/app#5", "CI_PASSED", prNumber="seven")],  # no issue row: no cast, stored
    [
        one(
            "dev-e-1/pod-a",
            "HEARTBEAT",
            agentId="dev-e-1/pod-a",
            currentRepo="acme/app",
            currentIssue=1,
            costUsd=Decimal("1.50"),
        ),
    ],
    # Two issues of one PR touched in one transaction: conductor_issue_of breaks the tie by
    # ORDER BY stream_id.
    [
        BEAT,
        one("acme/app#1", "PR_CREATED", prNumber=7),
        one("Acme/App#3", "PR_CREATED", prNumber=7),
    ],
    [
        one(
            "dev-e-2",
            "TOKEN_USAGE",
            agentId="dev-e-2",
            repo="ACME/app",
            issueNumber=7,
            costUsd=Decimal("0.10"),
            cacheCreationTokens=9,
            cacheCreation1hTokens=2.5,
        ),
        one("dev-e-2", "TOKEN_USAGE", agentId="dev-e-2", repo="", issueNumber=0, costUsd="0.5"),
    ],
    [
        one(
            "execution-log#run-1",
            "EXECUTION_LOG_STARTED",
            executionLogId="run-1",
            repo="acme/app",
            issueNumber=7,
            steps={"odd": 1},
        ),
    ],
    [one("execution-log#run-1", "EXECUTION_LOG_STEP", executionLogId="run-1", step={"t": "r"})],
    [one("execution-log#run-1", "EXECUTION_LOG_STEP", executionLogId="run-1")],
    [
        one(
            "execution-log#run-1",
            "EXECUTION_LOG_LINES",
            executionLogId="run-1",
            entries=[1, {"m": "x"}],
        ),
    ],
    [
        one(
            "execution-log#run-1",
            "EXECUTION_LOG_COMPLETED",
            executionLogId="run-1",
            totalCostUsd=Decimal("1.50"),
            prNumber=0,
            totalTurns=" 0x1F ",
        ),
    ],
    [one("execution-log#run-2", "EXECUTION_LOG_COMPLETED", executionLogId="run-2", totalTurns="x")],
    [one("acme/app!7", "REVIEW_PASSED", prNumber=7)],
    [one("acme/app!8", "MERGE_REQUESTED", prNumber=8)],
    [one("acme/app#1", "REVIEW_PASSED", link=0)],  # linked: no longer pending
    [one("repo:acme/app", "REPO_CONFIG_CHANGED", repo="Acme/App", present="yes", config={})],
    [one("repo:acme/app", "REPO_CONFIG_INVALID", repo="acme/app", error="bad", sha="s")],
    [one("acme/app#2", "ISSUE_HELD", actor="alice", labels=None)],
    [one("dev-e-2", "AGENT_PAUSED", agentId="dev-e-2", reason="r")],
    [one("dev-e-2", "AGENT_RESUMED", agentId="dev-e-2")],
    [one("acme/app#1", "ISSUE_REQUEUED")],
    [
        one(
            "dev-e-1/pod-a",
            "HEARTBEAT",
            agentId="dev-e-1/pod-a",
            currentRepo="acme/app",
            currentIssue=1,
        )
    ],
    [one("dev-e-2", "HEARTBEAT", agentId="dev-e-2", currentRepo="", currentIssue="0")],
    [
        (
            [
                ("acme/app#2", "ESCALATED", {"type": "ESCALATED"}),
                ("acme/app#2", "HUMAN_GATE_TRIGGERED", {"type": "HUMAN_GATE_TRIGGERED"}),
            ],
            None,
        )
    ],
]


SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(groups=GROUPS)
@example(groups=TOUR)
async def test_the_rebuild_writes_exactly_what_the_live_projection_wrote(
    decimal_store: EventStore, database_url: str, groups: list[list[Append]]
) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute(f"TRUNCATE events, idempotency_keys, {', '.join(PROJECTION_TABLES)}")
        pr_positions: list[int] = []
        # Rebuilt halfway too: the appends after it then project onto rebuilt rows.
        half = len(groups) // 2
        for part in (groups[:half], groups[half:]):
            for group in part:
                await asyncio.gather(*(append(decimal_store, item, pr_positions) for item in group))
            stored = await conn.fetchval("SELECT count(*) FROM events")
            live = await tables_as_text(conn)
            assert await rebuild_projections(conn, batch_size=7) == stored
            assert await tables_as_text(conn) == live
    finally:
        await conn.close()


# --- the pieces the fold does itself -------------------------------------------------------------
INT_TEXT = st.text(alphabet="0123456789 +-_xobXOBaefAEF.\t\n", max_size=10) | st.sampled_from(
    ["0x_1F", "-0o17", "+0b101", " 007 ", "1_000", "9223372036854775807", "2147483648", "--1"]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(INT_TEXT, min_size=1, max_size=20))
async def test_sql_int_reads_what_postgresql_reads(database_url: str, texts: list[str]) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for text in texts:
            if await conn.fetchval("SELECT pg_input_is_valid($1::text, 'bigint')", text):
                assert sql_int(text) == await conn.fetchval("SELECT $1::text::bigint", text), text
            else:  # refused: no stored event holds it where the fold reads it
                try:
                    value = sql_int(text)
                except ValueError:
                    continue
                assert not -(2**63) <= value < 2**63, text  # read, but out of range
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "value", ["plain", "tab\there", "new\nline", "cr\r\b\f\v\x01", "back\\slash\\N", "\\", ""]
)
async def test_copy_escape_is_copys_text_format(database_url: str, value: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        out = io.BytesIO()
        await conn.copy_from_query("SELECT $1::text", value, output=out)
    finally:
        await conn.close()
    field = out.getvalue().decode().removesuffix("\n")
    assert copy_escape(value) == field
    assert copy_unescape(field) == value


@pytest.mark.parametrize(
    ("left", "right"),
    [("[]", "[1]"), ('{"a": 1}', "[null]"), ("5", "[[2], 3]"), ("[1, 2]", '{"b": []}'),
     ("null", "[]"), ('"s"', '"t"'), ("[]", "[]")],
)  # fmt: skip
async def test_jsonb_concat_is_postgresqls(database_url: str, left: str, right: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        expected = await conn.fetchval("SELECT ($1::jsonb || $2::jsonb)::text", left, right)
    finally:
        await conn.close()
    assert jsonb_concat(left, right) == expected


def test_the_fold_writes_every_table_the_rebuild_empties() -> None:
    assert set(table_rows(Replay())) == set(PROJECTION_TABLES)


async def test_a_column_the_fold_does_not_know_stops_the_rebuild(
    store: EventStore, database_url: str
) -> None:
    await store.append("dev-e-1", [NewEvent("HEARTBEAT", {"agentId": "dev-e-1"})])
    conn = await connect(database_url)
    try:
        await conn.execute("ALTER TABLE agents ADD COLUMN mood text DEFAULT 'calm'")
        live = await tables_as_text(conn)
        with pytest.raises(RuntimeError, match=r"agents\.mood"):
            await rebuild_projections(conn)
        assert await tables_as_text(conn) == live
    finally:
        await conn.close()
