"""Event store benchmark: appends/s, claims/s and read latencies, with a ceiling and an anchor.

Run by hand (`make bench` or `python bench/event_store.py`), not as a test. Everything runs on
one embedded PostgreSQL (or DATABASE_URL) in one process run, and the throughput variants are
interleaved round by round, so the ratios compare like with like on a noisy shared machine.

  ceiling: raw asyncpg single-row INSERT per transaction into a bare table of the same shape
  anchor:  the eventsourcing library's PostgreSQL recorder, insert_events (psycopg)
  store:   EventStore.append — version check, insert, projections, in one server-side call
  api:     POST /api/events against a separate `conductor-e api` process (tests/lean_http.py)

Then 1,000,000 events over 100,000 issues (10,000 queued) are loaded through the real
projection function, and the read latencies are measured. Last, `projections rebuild` replays
them (store.projections.rebuild's one pass), timed, and every projection table's digest is
compared with the one the plpgsql projection left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import fresh_database  # noqa: E402
from store.database import connect, create_pool  # noqa: E402
from store.events import EventStore, NewEvent  # noqa: E402
from store.projections import PROJECTION_TABLES, Projections, rebuild_projections  # noqa: E402
from tests.lean_http import LeanHttp  # noqa: E402

RAW_TABLE = """
CREATE TABLE IF NOT EXISTS bench_raw (
    position    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id   text        NOT NULL,
    version     integer     NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
)"""

HEARTBEAT = {"agentId": "", "status": "working", "currentIssue": 12, "currentRepo": "acme/app"}


async def timed(
    clients: int, seconds: float, make_worker: Callable[[int], Callable[[], Awaitable[None]]]
) -> float:
    """Operations per second of `clients` workers each looping for `seconds`."""
    stop_at = time.perf_counter() + seconds
    counts = [0] * clients

    async def loop(i: int) -> None:
        op = make_worker(i)
        while time.perf_counter() < stop_at:
            await op()
            counts[i] += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(clients)))
    return sum(counts) / (time.perf_counter() - started)


def threaded(
    clients: int, seconds: float, make_worker: Callable[[int], Callable[[], None]]
) -> float:
    """The same for blocking workers (the psycopg-based anchor), one thread each."""
    stop_at = time.perf_counter() + seconds
    counts = [0] * clients

    def loop(i: int) -> None:
        op = make_worker(i)
        while time.perf_counter() < stop_at:
            op()
            counts[i] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Bench:
    def __init__(self, dsn: str, seconds: float) -> None:
        self.dsn = dsn
        self.seconds = seconds
        self.run_id = uuid.uuid4().hex[:6]
        self.lean_clients: list[LeanHttp] = []
        self.reference_rate = 0.0  # events/s of the plpgsql replay in load_million

    async def setup(self) -> None:
        conn = await connect(self.dsn)
        await conn.execute(RAW_TABLE)
        await conn.close()
        self.pool = await create_pool(self.dsn, max_size=10)
        self.store = EventStore(self.pool)
        self.projections = Projections(self.pool)
        self.http = aiohttp.ClientSession()
        self._start_api()
        self._setup_anchor()

    def _start_api(self) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": self.dsn,
            "CONDUCTOR_HTTP_HOST": "127.0.0.1",
            "CONDUCTOR_HTTP_PORT": str(self.port),
            "CONDUCTOR_LOG_LEVEL": "WARNING",
        }
        self.api = subprocess.Popen(
            [sys.executable, "-m", "bot", "api"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
        )

    async def wait_for_api(self) -> None:
        for _ in range(300):
            try:
                async with self.http.get(f"http://127.0.0.1:{self.port}/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("the API process did not start")

    def _setup_anchor(self) -> None:
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        parts = urlsplit(self.dsn)
        host = parts.hostname or parse_qs(parts.query).get("host", ["localhost"])[0]
        self.datastore = PostgresDatastore(
            dbname=parts.path.lstrip("/") or "postgres",
            host=host,
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password or "",
            pool_size=8,
            max_overflow=0,
        )
        self.anchor = PostgresApplicationRecorder(self.datastore, events_table_name="bench_es")
        self.anchor.create_table()

    async def close(self) -> None:
        for http in self.lean_clients:
            await http.close()
        self.api.terminate()
        self.api.wait()
        await self.http.close()
        await self.pool.close()
        self.datastore.close()

    # --- the variants ---------------------------------------------------------------------
    def raw(self, i: int) -> Callable[[], Awaitable[None]]:
        stream = f"raw-{self.run_id}-{i}-{uuid.uuid4().hex[:4]}"
        version = 0
        payload = {**HEARTBEAT, "agentId": stream}

        async def op() -> None:
            nonlocal version
            version += 1
            await self.pool.execute(
                "INSERT INTO bench_raw (stream_id, version, type, data) VALUES ($1, $2, $3, $4)",
                stream,
                version,
                "HEARTBEAT",
                payload,
            )

        return op

    def store_append(self, i: int) -> Callable[[], Awaitable[None]]:
        agent = f"store-{self.run_id}-{i}-{uuid.uuid4().hex[:4]}"
        version = 0
        payload = {**HEARTBEAT, "agentId": agent}

        async def op() -> None:
            nonlocal version
            result = await self.store.append(
                agent, [NewEvent("HEARTBEAT", payload)], expected_version=version
            )
            version = result.version

        return op

    def api_append(self, i: int) -> Callable[[], Awaitable[None]]:
        """One keep-alive connection per client, through tests/lean_http.py: aiohttp's client
        costs about as much CPU per request as the API's whole answer, on the same cores."""
        agent = f"api-{self.run_id}-{i}-{uuid.uuid4().hex[:4]}"
        body = json.dumps({"type": "HEARTBEAT", **HEARTBEAT, "agentId": agent}).encode()
        http = self.lean_client()
        request = http.encode("POST", "/api/events", body, "application/json")

        async def op() -> None:
            status, answer = await http.send(request)
            if status != 200:
                raise RuntimeError(answer.decode(errors="replace"))

        return op

    def lean_client(self) -> LeanHttp:
        http = LeanHttp(f"http://127.0.0.1:{self.port}")
        self.lean_clients.append(http)
        return http

    def anchor_insert(self, i: int) -> Callable[[], None]:
        from eventsourcing.persistence import StoredEvent

        originator = uuid.uuid4()
        version = 0
        state = json.dumps(HEARTBEAT).encode()

        def op() -> None:
            nonlocal version
            version += 1
            self.anchor.insert_events([StoredEvent(originator, version, "bench:Heartbeat", state)])

        return op

    def claim(self, i: int) -> Callable[[], Awaitable[None]]:
        async def op() -> None:
            if await self.store.claim("issue", f"claimer-{i}", {}) is None:
                raise RuntimeError("the claim queue ran dry; raise --claim-issues")

        return op

    async def throughput(self, rounds: int, claim_issues: int) -> dict[str, list[float]]:
        await self.wait_for_api()
        variants: list[tuple[str, Callable[[], Awaitable[float]]]] = []
        for clients in (1, 8):
            variants += [
                (
                    f"raw INSERT, {clients} client(s)",
                    lambda c=clients: timed(c, self.seconds, self.raw),
                ),
                (
                    f"eventsourcing insert_events, {clients} client(s)",
                    lambda c=clients: asyncio.to_thread(
                        threaded, c, self.seconds, self.anchor_insert
                    ),
                ),
                (
                    f"store append, {clients} client(s)",
                    lambda c=clients: timed(c, self.seconds, self.store_append),
                ),
                (
                    f"POST /api/events, {clients} client(s)",
                    lambda c=clients: timed(c, self.seconds, self.api_append),
                ),
            ]
        results: dict[str, list[float]] = {name: [] for name, _ in variants}
        for r in range(rounds):
            for name, run in variants:
                results[name].append(await run())
            print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
        # Claims: a queue deep enough for every round, claimed by 1 and by 8 agents.
        await self.load_queue(claim_issues)
        for clients in (1, 8):
            name = f"claims, {clients} agent(s)"
            results[name] = [await timed(clients, self.seconds, self.claim) for _ in range(rounds)]
        return results

    async def load_queue(self, count: int) -> None:
        """Queue `count` issues through conductor_append, a few thousand per statement."""
        step = 2_000
        for start in range(1, count + 1, step):
            await self.pool.execute(
                """
                SELECT conductor_append('claims/' || $1 || '#' || i, 0, NULL,
                       ARRAY['ISSUE_APPROVED'],
                       ARRAY[jsonb_build_object('repo', 'claims/' || $1, 'issueNumber', i)],
                       ARRAY['{}'::jsonb])
                FROM generate_series($2::int, $3::int) AS i
                """,
                self.run_id,
                start,
                min(start + step - 1, count),
            )

    # --- the large store ------------------------------------------------------------------
    async def load_million(self, issues: int, per_issue: int, queued_every: int) -> None:
        """issues × per_issue events, inserted in one statement and projected by the same
        plpgsql function the appends use (in batches, with progress)."""
        conn = await connect(self.dsn)
        try:
            started = time.perf_counter()
            await conn.execute(
                "TRUNCATE events, issues, agents, usage_daily, usage_by_issue, "
                "idempotency_keys RESTART IDENTITY"
            )
            await conn.execute(
                """
                INSERT INTO events (stream_id, version, type, data, metadata, recorded_at)
                SELECT 'big/repo' || (i % 50) || '#' || i, v,
                       CASE WHEN i % $3 = 0
                            THEN (ARRAY['ISSUE_APPROVED','ISSUE_ASSIGNED','ISSUE_UNASSIGNED',
                                        'ISSUE_ASSIGNED','ISSUE_UNASSIGNED','ISSUE_ASSIGNED',
                                        'ISSUE_UNASSIGNED','ISSUE_ASSIGNED','ISSUE_UNASSIGNED',
                                        'PRIORITY_CHANGED'])[v]
                            ELSE (ARRAY['ISSUE_APPROVED','ISSUE_ASSIGNED','WORK_STARTED',
                                        'PR_CREATED','CI_PASSED','REVIEW_ASSIGNED',
                                        'REVIEW_PASSED','MERGED','DEPLOYED_PRODUCTION',
                                        'ISSUE_DONE'])[v] END,
                       jsonb_build_object('repo', 'big/repo' || (i % 50), 'issueNumber', i,
                                          'agentId', 'dev-e-' || (i % 7), 'prNumber', i,
                                          'priority', (ARRAY['critical','high','normal',
                                                             'normal'])[1 + i % 4],
                                          'title', 'Issue number ' || i),
                       '{}'::jsonb,
                       now() - make_interval(secs => ($1::int * $2::int - (i * $2 + v)))
                FROM generate_series(1, $1::int) AS i, generate_series(1, $2::int) AS v
                ORDER BY i, v
                """,
                issues,
                per_issue,
                queued_every,
            )
            head = await conn.fetchval("SELECT max(position) FROM events")
            print(
                f"  inserted {head:,} events in {time.perf_counter() - started:.1f}s",
                file=sys.stderr,
            )
            step = 100_000
            projecting = time.perf_counter()
            for after in range(0, head, step):
                await conn.execute(
                    "SELECT conductor_project_range($1, $2)", after, min(after + step, head)
                )
                print(
                    f"  projected {min(after + step, head):,}/{head:,} "
                    f"({time.perf_counter() - started:.0f}s)",
                    file=sys.stderr,
                )
            self.reference_rate = head / (time.perf_counter() - projecting)
            # As a store loaded long ago would be: vacuumed (so autovacuum does not share the
            # cores with the latencies measured next) and analysed.
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()

    async def rebuild(self) -> tuple[int, float, bool]:
        """`projections rebuild` over the loaded store: (events, seconds, identical rows)."""
        conn = await connect(self.dsn)
        try:
            before = await projection_digests(conn)
            started = time.perf_counter()
            events = await rebuild_projections(conn)
            elapsed = time.perf_counter() - started
            return events, elapsed, await projection_digests(conn) == before
        finally:
            await conn.close()

    async def latencies(self, runs: int) -> dict[str, list[float]]:
        queued = await self.pool.fetchval("SELECT count(*) FROM issues WHERE state = 'queued'")
        total = await self.pool.fetchval("SELECT count(*) FROM issues")
        events = await self.pool.fetchval("SELECT count(*) FROM events")
        print(f"  store: {events:,} events, {total:,} issues, {queued:,} queued", file=sys.stderr)
        out: dict[str, list[float]] = {
            "queue top-25": [],
            "read one stream": [],
            "GET /api/queue": [],
            "SELECT 1": [],
        }
        http = self.lean_client()
        get_queue = http.encode("GET", "/api/queue")
        for n in range(runs):
            started = time.perf_counter()
            await self.projections.queue(25)
            out["queue top-25"].append(time.perf_counter() - started)
            stream = f"big/repo{(n * 37) % 50}#{1 + (n * 7919) % 100_000}"
            started = time.perf_counter()
            await self.store.read_stream(stream)
            out["read one stream"].append(time.perf_counter() - started)
            started = time.perf_counter()
            await http.send(get_queue)
            out["GET /api/queue"].append(time.perf_counter() - started)
            # The floor: one round trip through the same pool, no table touched.
            started = time.perf_counter()
            await self.pool.fetchval("SELECT 1")
            out["SELECT 1"].append(time.perf_counter() - started)
        return out


async def projection_digests(conn: asyncpg.Connection) -> dict[str, str]:
    """md5 of every projection table's rows as text, in order."""
    return {
        table: await conn.fetchval(
            f"SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {table} t"
        )
        for table in PROJECTION_TABLES
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--issues", type=int, default=100_000)
    parser.add_argument("--per-issue", type=int, default=10)
    parser.add_argument("--latency-runs", type=int, default=2000)
    parser.add_argument("--skip-large", action="store_true", help="skip the 1M-event part")
    parser.add_argument(
        "--claim-issues",
        type=int,
        default=None,
        help="issues queued for the claim rounds (default: enough for 6,000 claims/s)",
    )
    args = parser.parse_args()
    async with fresh_database("events") as dsn:
        await run(args, dsn)


async def run(args: argparse.Namespace, dsn: str) -> None:
    bench = Bench(dsn, args.seconds)
    try:
        await bench.setup()
        print("throughput (interleaved rounds)...", file=sys.stderr)
        # Both claim variants (1 and 8 agents) take from one queue; it must not run dry.
        claim_issues = args.claim_issues or int(args.rounds * args.seconds * 2 * 6000) + 5_000
        results = await bench.throughput(args.rounds, claim_issues)
        medians = {name: statistics.median(v) for name, v in results.items()}
        print("\n== throughput (median of rounds, operations/s) ==")
        for name, value in medians.items():
            print(f"{name:<42} {value:>9,.0f}")

        def ratio(a: str, b: str) -> float:
            return medians[a] / medians[b]

        print("\n== ratios ==")
        print(
            f"store append / raw INSERT, 1 client:             "
            f"{ratio('store append, 1 client(s)', 'raw INSERT, 1 client(s)'):.2f}"
            "  (target >= 0.85)"
        )
        print(
            f"store append / eventsourcing, 8 clients:         "
            f"{ratio('store append, 8 client(s)', 'eventsourcing insert_events, 8 client(s)'):.2f}"
            "  (target >= 2)"
        )
        print(
            f"POST /api/events / raw INSERT, 1 client:         "
            f"{ratio('POST /api/events, 1 client(s)', 'raw INSERT, 1 client(s)'):.2f}"
            "  (target >= 0.6)"
        )
        print(
            f"eventsourcing / raw INSERT, 1 client:            "
            f"{ratio('eventsourcing insert_events, 1 client(s)', 'raw INSERT, 1 client(s)'):.2f}"
        )

        if not args.skip_large:
            per = args.per_issue
            print(f"\nloading {args.issues * per:,} events...", file=sys.stderr)
            await bench.load_million(args.issues, per, queued_every=10)
            lat = await bench.latencies(args.latency_runs)
            print(f"\n== latency over {args.issues * per:,} events, {args.issues:,} issues ==")
            targets = {
                "queue top-25": "p99 < 0.8 ms, p50 within 0.2 ms of SELECT 1",
                "read one stream": "p99 < 0.8 ms",
                "GET /api/queue": "p50 < 5 ms",
                "SELECT 1": "the round trip alone",
            }
            for name, values in lat.items():
                print(
                    f"{name:<20} p50 {pct(values, 0.5) * 1000:7.3f} ms   "
                    f"p99 {pct(values, 0.99) * 1000:7.3f} ms   ({targets[name]})"
                )
            print("rebuilding the projections...", file=sys.stderr)
            events, seconds, identical = await bench.rebuild()
            print(f"\n== projections rebuild over {events:,} events ==")
            print(
                f"projections rebuild, {events:,} events: {events / seconds:,.0f} events/s "
                f"(target ≥ 50,000), rows identical: {'yes' if identical else 'no'}"
            )
            print(
                f"(the per-event plpgsql replay that loaded them: "
                f"{bench.reference_rate:,.0f} events/s)"
            )
    finally:
        await bench.close()


if __name__ == "__main__":
    asyncio.run(main())
