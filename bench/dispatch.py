"""Push dispatch benchmark: a signed `issues.labeled` webhook to the entry in the agent's
Valkey stream (p50/p99, target p50 < 100 ms), and dispatch throughput with 20 agents and 2,000
issues.

Run by hand (`python bench/dispatch.py`), not as a test. Everything is real: the API
(aiohttp, on 127.0.0.1) takes the webhook signed as GitHub signs it, PostgreSQL (embedded in a
temporary directory, or a fresh database in DATABASE_URL), the dispatcher woken by
LISTEN/NOTIFY, and Debian's redis-server on a loopback port (scripts/install_redis.sh). Each
agent is a consumer doing what the runtime does: XREADGROUP in group `agents`, DEL of its
signal, XACK.

  latency:    one agent; each webhook approves one issue; the time from sending the webhook
              to the consumer's XREADGROUP returning its entry.
  throughput: 2,000 issues approved over 20 repos (one stack each, so 20 agents); the time
              until every agent has read and acknowledged all of its issues. With depth 1 the
              next push follows an acknowledgement at the dispatcher's next tick (every second,
              or at once when an event lands), so the figure is given for a deeper depth too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import fresh_database, percentile  # noqa: E402
from bot.context import AppContext  # noqa: E402
from bot.integrations.valkey import ValkeyClient  # noqa: E402
from bot.services.dispatch.dispatcher import DispatchService  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.web.app import create_app  # noqa: E402
from bot.wiring import Services  # noqa: E402
from store.database import create_pool  # noqa: E402
from store.events import NewEvent  # noqa: E402
from tests.dispatch.conftest import REDIS_SERVER, RedisServer, RuntimeConsumer  # noqa: E402
from tests.fakes.github import delivery_headers, encode, issues_payload  # noqa: E402
from tests.routing.test_claims import configure  # noqa: E402

SECRET = b"bench-webhook-secret"
READY = "agent-ready"


async def with_dispatcher(
    dsn: str, redis: RedisServer, repos: list[str], depth: int, body: object
) -> None:
    pool = await create_pool(dsn, max_size=20)
    settings = load_settings(
        {
            "CONDUCTOR_DATA_DIR": "/nonexistent",
            "CONDUCTOR_GITHUB_WEBHOOK_SECRET": SECRET.decode(),
            "CONDUCTOR_MANAGED_REPOS": ",".join(repos),
            "CONDUCTOR_VALKEY_URL": redis.url,
            "CONDUCTOR_DISPATCH_DEPTH": str(depth),
        }
    )
    valkey = ValkeyClient(redis.url)
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as session:
            context = AppContext.build(settings, dsn, pool, session)
            for i, repo in enumerate(repos):
                await configure(context, repo, {"stack": f"s{i:02d}"})
            dispatcher = DispatchService(context, valkey)
            running = asyncio.create_task(dispatcher.run(stop))
            services = Services.build(context, dispatch=dispatcher)
            server = TestServer(create_app(services), host="127.0.0.1")
            await server.start_server()
            try:
                await body(context, session, str(server.make_url("/api/webhook/github")))  # type: ignore[operator]
            finally:
                stop.set()
                await running
                await server.close()
    finally:
        await valkey.close()
        await pool.close()


async def latency(dsn: str, redis: RedisServer, samples: int) -> None:
    repo = "bench-org/svc-00"

    async def body(context: AppContext, session: aiohttp.ClientSession, url: str) -> None:
        agent = RuntimeConsumer(redis.url, "dev-e-s00")
        await agent.create_group()
        took: list[float] = []
        for number in range(1, samples + 1):
            raw = encode(issues_payload("labeled", repo, number, labels=[READY], label=READY))
            headers = delivery_headers("issues", raw, SECRET)
            started = time.perf_counter()
            async with session.post(url, data=raw, headers=headers) as response:
                assert response.status < 300, await response.text()
            delivered = await agent.read(block_ms=5_000)
            assert delivered is not None, f"issue {number} never reached the stream"
            took.append(time.perf_counter() - started)
            assert delivered.fields["issueNumber"] == str(number)
            await agent.ack(delivered)
        await agent.close()
        ms = [t * 1000 for t in took]
        print(
            f"webhook → stream entry, {samples} issues: p50 {percentile(ms, 0.5):.1f} ms, "
            f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
        )

    await with_dispatcher(dsn, redis, [repo], 1, body)


async def throughput(dsn: str, redis: RedisServer, agents: int, issues: int, depth: int) -> None:
    repos = [f"bench-org/svc-{i:02d}" for i in range(agents)]

    async def body(context: AppContext, session: aiohttp.ClientSession, url: str) -> None:
        consumers = [RuntimeConsumer(redis.url, f"dev-e-s{i:02d}") for i in range(agents)]
        for consumer in consumers:
            await consumer.create_group()
        stop = asyncio.Event()
        workers = [asyncio.create_task(c.work(stop)) for c in consumers]
        started = time.perf_counter()
        for number in range(1, issues + 1):
            repo = repos[number % agents]
            data = {"repo": repo, "issueNumber": number, "priority": "normal"}
            await context.store.append(f"{repo}#{number}", [NewEvent("ISSUE_APPROVED", data)])
        approved = time.perf_counter() - started
        while sum(len(c.received) for c in consumers) < issues:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*workers)
        for consumer in consumers:
            await consumer.close()
        print(
            f"throughput, {agents} agents, {issues} issues, depth {depth}: all read and "
            f"acknowledged in {elapsed:.1f} s ({issues / elapsed:.0f} issues/s; the approvals "
            f"themselves took {approved:.1f} s)"
        )

    await with_dispatcher(dsn, redis, repos, depth, body)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--issues", type=int, default=2_000)
    parser.add_argument("--depths", default="1,20", help="comma-separated depths to measure")
    args = parser.parse_args()
    if not REDIS_SERVER.exists():
        sys.exit(f"{REDIS_SERVER} is missing: run scripts/install_redis.sh")
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp:
        redis = RedisServer(REDIS_SERVER, Path(tmp))
        redis.start()
        try:
            async with fresh_database("dispatch_latency") as dsn:
                await latency(dsn, redis, args.samples)
            for depth in (int(d) for d in args.depths.split(",")):
                async with fresh_database(f"dispatch_tp{depth}") as dsn:
                    await throughput(dsn, redis, args.agents, args.issues, depth)
        finally:
            redis.stop()


if __name__ == "__main__":
    asyncio.run(main())
