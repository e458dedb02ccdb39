"""A real redis-server (Debian's, installed by scripts/install_redis.sh when missing), the
runtime's consumer, and helpers for the push-dispatch tests."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from bot.context import AppContext
from bot.integrations.valkey import ValkeyClient
from bot.services.dispatch.dispatcher import DispatchService
from tests.test_cli import free_port
from tests.waiting import wait_until_blocking

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = Path("/usr/bin/redis-server")


@pytest.fixture(scope="session")
def redis_binary() -> Path:
    """Debian's redis-server, installed by scripts/install_redis.sh when it is missing."""
    if not REDIS_SERVER.exists():
        result = subprocess.run(
            ["sh", str(ROOT / "scripts" / "install_redis.sh")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
    assert REDIS_SERVER.exists(), f"{REDIS_SERVER} is still missing after install_redis.sh"
    return REDIS_SERVER


class RedisServer:
    """redis-server on a loopback port with its data (an fsync'd AOF) in a temp dir: stopped
    and started again on the same port, it keeps its streams, as a Valkey with a volume does."""

    def __init__(self, binary: Path, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with (self.data_dir / "redis.log").open("ab") as log:
            self.process = self._spawn(log)
        self._wait_ready()

    def _spawn(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(self.binary),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.data_dir),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--daemonize", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def _wait_ready(self) -> None:
        process = self.process
        assert process is not None

        def pong() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            assert process.poll() is None, "redis-server exited at start-up"
            return False

        wait_until_blocking(pong, timeout=10, what="redis-server to answer PING")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def redis_server(redis_binary: Path, tmp_path: Path) -> Iterator[RedisServer]:
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisServer(redis_binary, data)
    server.start()
    yield server
    server.stop()


@dataclass(frozen=True)
class Delivered:
    entry_id: str
    fields: dict[str, str]


class RuntimeConsumer:
    """What the agent runtime does (automate-e src/stream-consumer.js): XGROUP CREATE ... 0
    MKSTREAM in group `agents`, XREADGROUP (pending first, then `>`), DEL signal:{agentId} on
    pick-up, XACK when the work is done."""

    def __init__(self, url: str, agent_id: str) -> None:
        self.agent_id = agent_id
        self.stream = f"assignments:{agent_id}"
        self.redis = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=2)
        self.received: list[Delivered] = []

    async def close(self) -> None:
        await self.redis.aclose()

    async def create_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, "agents", id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, block_ms: int = 100, *, pending: bool = False) -> Delivered | None:
        """One new entry (or with `pending`, the oldest delivered and unacknowledged one, as
        the runtime reads them when it starts) and the signal deleted, or None."""
        await self.create_group()
        result = await self.redis.xreadgroup(
            "agents",
            self.agent_id,
            {self.stream: "0" if pending else ">"},
            count=1,
            block=None if pending else block_ms,
        )
        if result and not result[0][1]:
            return None
        if not result:
            return None
        entry_id, fields = result[0][1][0]
        await self.redis.delete(f"signal:{self.agent_id}")
        delivered = Delivered(entry_id, dict(fields))
        self.received.append(delivered)
        return delivered

    async def ack(self, delivered: Delivered) -> None:
        await self.redis.xack(self.stream, "agents", delivered.entry_id)

    async def signals(self) -> int:
        return int(await self.redis.llen(f"signal:{self.agent_id}"))

    async def entries(self) -> list[dict[str, str]]:
        return [dict(fields) for _, fields in await self.redis.xrange(self.stream)]

    async def work(self, stop: asyncio.Event) -> None:
        """Take and acknowledge entries until `stop`, riding out an outage. After an error it
        first takes what is pending, as a restarted runtime does: an entry whose delivery was
        cut off with the connection is pending in the group, and `>` never returns it."""
        restarted = False
        while not stop.is_set():
            try:
                delivered = await self.read(pending=restarted)
                restarted = restarted and delivered is not None
                if delivered is not None:
                    await self.ack(delivered)
            except (RedisError, OSError):
                restarted = True
                await asyncio.sleep(0.05)  # the runtime retries too (after 5 s)


@pytest.fixture
async def consumers(redis_server: RedisServer) -> AsyncIterator[Callable[[str], RuntimeConsumer]]:
    made: list[RuntimeConsumer] = []

    def make(agent_id: str) -> RuntimeConsumer:
        consumer = RuntimeConsumer(redis_server.url, agent_id)
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        await consumer.close()


@pytest.fixture
async def dispatcher_factory(
    redis_server: RedisServer, make_context: Callable[..., AppContext]
) -> AsyncIterator[Callable[..., DispatchService]]:
    """A DispatchService on this test's database and redis-server (its own context)."""
    clients: list[ValkeyClient] = []

    def make(env: dict[str, str] | None = None) -> DispatchService:
        context = make_context(
            {
                "CONDUCTOR_VALKEY_URL": redis_server.url,
                "CONDUCTOR_RETRY_MAX_SECONDS": "1",
                **(env or {}),
            }
        )
        client = ValkeyClient(redis_server.url, timeout=2)
        clients.append(client)
        return DispatchService(context, client)

    yield make
    for client in clients:
        await client.close()
