"""The agents' Valkey (Redis protocol): their assignment streams and KEDA's wake signals.

The wire format is the agent runtime's (Stig-Johnny/automate-e, src/stream-consumer.js): it
reads `assignments:{agentId}` in the consumer group `agents` (created at id 0 with MKSTREAM),
XACKs an entry when the work is done, and deletes `signal:{agentId}` (the list KEDA scales the
agent on) when it picks an entry up. This module is the only one that imports `redis`; it
returns our own dataclasses and raises `ValkeyUnavailable` for any failure to talk to it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

GROUP = "agents"
# How long the per-assignment marker is kept: far longer than any outbox row stays unsent.
MARKER_SECONDS = 7 * 24 * 3600
PENDING_PAGE = 1_000

# Exactly once: the marker `dispatched:{assignmentId}` (a uuid) and the entry land together
# (a script runs atomically), so a re-send after a crash finds the marker and returns the first
# entry's id instead of writing a second one.
_PUSH = """
local existing = redis.call('GET', KEYS[3])
if existing then return {existing, 0} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[3], id, 'EX', tonumber(ARGV[1]))
redis.call('RPUSH', KEYS[2], KEYS[3])
return {id, 1}
"""


class ValkeyUnavailable(Exception):
    """Valkey could not be reached or refused the command (the message names no secret)."""


def stream_key(agent_id: str) -> str:
    return f"assignments:{agent_id}"


def signal_key(agent_id: str) -> str:
    return f"signal:{agent_id}"


def marker_key(assignment: str) -> str:
    return f"dispatched:{assignment}"


def describe_url(url: str) -> str:
    """The URL without its password, for a log line."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


@dataclass(frozen=True)
class Pushed:
    entry_id: str
    written: bool  # False: the entry was already there (a re-send after a crash)


@dataclass(frozen=True)
class Unacked:
    """An entry of an agent's stream not acknowledged yet: delivered (to a consumer of group
    `agents`) or not; `idle_seconds` since its delivery, or since it was written."""

    entry_id: str
    delivered: bool
    idle_seconds: float


def _entry_age(entry_id: str, now_ms: int) -> float:
    return max(0, now_ms - int(entry_id.split("-", 1)[0])) / 1000


class ValkeyClient:
    """One connection pool to the agents' Valkey, held for the process lifetime."""

    def __init__(self, url: str, password: str | None = None, *, timeout: float = 5.0) -> None:
        self.url = describe_url(url)
        self._redis = aioredis.Redis.from_url(
            url,
            password=password or None,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self._push = self._redis.register_script(_PUSH)

    async def close(self) -> None:
        await self._redis.aclose()

    async def ping(self) -> float:
        """Round trip in seconds."""
        started = time.perf_counter()
        try:
            await self._redis.ping()  # type: ignore[misc]
        except RedisError as exc:
            raise ValkeyUnavailable(type(exc).__name__) from None
        return time.perf_counter() - started

    async def ensure_group(self, agent_id: str) -> None:
        """The runtime's consumer group, at id 0 so it reads entries written before it started."""
        try:
            await self._redis.xgroup_create(stream_key(agent_id), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise ValkeyUnavailable(type(exc).__name__) from None
        except RedisError as exc:
            raise ValkeyUnavailable(type(exc).__name__) from None

    async def push(self, agent_id: str, assignment: str, fields: Mapping[str, str]) -> Pushed:
        """Write an assignment to the agent's stream and signal it, unless already written."""
        args: list[str] = [str(MARKER_SECONDS)]
        for key, value in fields.items():
            args += [key, value]
        keys = [stream_key(agent_id), signal_key(agent_id), marker_key(assignment)]
        try:
            entry_id, written = await self._push(keys=keys, args=args)
        except RedisError as exc:
            raise ValkeyUnavailable(type(exc).__name__) from None
        return Pushed(str(entry_id), bool(written))

    async def unacked(self, agent_id: str) -> list[Unacked]:
        """The agent's entries not acknowledged yet: pending in group `agents`, and those after
        the group's last delivered id (written, not read yet). Creates the group if missing."""
        key = stream_key(agent_id)
        try:
            group = await self._group(key)
            if group is None:
                # Only when missing: the rest of this method reads and never writes.
                await self.ensure_group(agent_id)
                group = await self._group(key)
            assert group is not None
            pending = await self._redis.xpending_range(key, GROUP, "-", "+", PENDING_PAGE)
            waiting = await self._redis.xrange(
                key, f"({group['last-delivered-id']}", "+", count=PENDING_PAGE
            )
            now = await self._redis.time()
        except RedisError as exc:
            raise ValkeyUnavailable(type(exc).__name__) from None
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        entries = [
            Unacked(str(p["message_id"]), True, int(p["time_since_delivered"]) / 1000)
            for p in pending
        ]
        entries += [Unacked(str(eid), False, _entry_age(str(eid), now_ms)) for eid, _ in waiting]
        return entries

    async def _group(self, key: str) -> dict[str, Any] | None:
        try:
            groups = await self._redis.xinfo_groups(key)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None
            raise
        return next((dict(g) for g in groups if g["name"] == GROUP), None)
