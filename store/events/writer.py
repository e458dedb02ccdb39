"""The writer: appends and claims, batched into shared transactions, and a person's assignment.

Every write is one call to a plpgsql function (conductor_append, conductor_claim, their batch
forms), which takes the append lock; writes that arrive while one is in flight ride together.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from store.errors import (
    CONNECTION_ERRORS,
    ConcurrencyError,
    DatabaseUnavailableError,
    EventValidationError,
    Refused,
    StoreError,
    unavailable_on_connection_loss,
)
from store.events.reads import EventReader
from store.events.records import AppendResult, Claim, NewEvent
from store.storable import text_problem, unstorable

log = logging.getLogger(__name__)

CONCURRENCY_SQLSTATE = "CE409"  # conductor_append's "not the expected version"
T = TypeVar("T")

# The driver could not encode an argument (asyncpg raises an InterfaceError that is also a
# ValueError): bad data, not a lost connection.
_DATA_ERRORS = (ValueError,)
# SQLSTATE class 22, "data exception": PostgreSQL refused a value of this append.
_DATA_EXCEPTION_CLASS = "22"


def _is_connection_loss(exc: BaseException) -> bool:
    return isinstance(exc, CONNECTION_ERRORS) and not isinstance(exc, _DATA_ERRORS)


def _check_texts(named: Iterable[tuple[str, str]]) -> None:
    """Refuse (EventValidationError) the first (name, text) whose text PostgreSQL would refuse."""
    for name, text in named:
        reason = text_problem(text)
        if reason is not None:
            raise EventValidationError(f"the {name} is not storable: {reason}", name)


def check_storable(stream_id: str, events: Sequence[NewEvent], key: str | None) -> None:
    """Refuse (EventValidationError) what PostgreSQL would refuse, before it can join a batch
    and fail the appends it shares a call with."""
    _check_texts((("stream id", stream_id), ("idempotency key", key or "")))
    for event in events:
        reason = text_problem(event.type)
        if reason is not None:
            raise EventValidationError(f"the event type is not storable: {reason}", "type")
        for part, value in (("", event.data), ("metadata.", event.metadata)):
            found = unstorable(value)
            if found is not None:
                path, reason = found
                raise EventValidationError(
                    f"invalid {event.type} event: field {part}{path!r}: {reason}", part + path
                )


def check_claimable(
    kind: str, agent_id: str, metadata: dict[str, Any], route_keys: Sequence[str] | None
) -> None:
    """Refuse (EventValidationError) a claim PostgreSQL would refuse, before it joins a batch."""
    _check_texts(
        (
            ("claim kind", kind),
            ("agent id", agent_id),
            *(("route key", key) for key in route_keys or ()),
        )
    )
    found = unstorable(metadata)
    if found is not None:
        path, reason = found
        raise EventValidationError(f"claim metadata: field {path!r}: {reason}", "metadata." + path)


def _settle(pending: _PendingAppend | _PendingClaim, row: Any) -> None:
    """Set a write's future from its row of the batch (or of its lone statement)."""
    code = row["error_code"]
    if code is None:
        if isinstance(pending, _PendingClaim):
            claimed = row["claimed"]
            pending.result.set_result(
                None if claimed is None else Claim(claimed, row["claim_position"])
            )
        else:
            pending.result.set_result(
                AppendResult(
                    stream_id=pending.stream_id,
                    first_position=row["first_position"],
                    last_position=row["last_position"],
                    version=row["stream_version"],
                    recorded_at=row["recorded_at"],
                    duplicate=row["duplicate"],
                )
            )
    elif code == CONCURRENCY_SQLSTATE and isinstance(pending, _PendingAppend):
        actual = int(row["error_hint"] or -1)
        pending.result.set_exception(
            ConcurrencyError(pending.stream_id, pending.expected_version or 0, actual)
        )
    else:
        message = row["error_message"]
        if isinstance(pending, _PendingClaim):
            what = f"the claim of {pending.agent_id}"
        else:
            what = f"the event for {pending.stream_id}"
        if str(code).startswith(_DATA_EXCEPTION_CLASS):
            pending.result.set_exception(
                EventValidationError(f"PostgreSQL refused {what}: {message}")
            )
        else:
            pending.result.set_exception(StoreError(f"writing {what} failed: {message}"))


@dataclass
class _PendingAppend:
    stream_id: str
    events: Sequence[NewEvent]
    expected_version: int | None
    idempotency_key: str | None
    result: asyncio.Future[AppendResult]


@dataclass
class _PendingClaim:
    kind: str
    agent_id: str
    metadata: dict[str, Any]
    route_keys: list[str] | None
    unrouted: bool
    result: asyncio.Future[Claim | None]


_Pending = _PendingAppend | _PendingClaim

# Appends and claims that arrived together: the appends, then the claims (each in its own
# subtransaction), in one statement. Claims are numbered negatively to tell them apart.
_BATCH = """
SELECT item, first_position, last_position, stream_version, recorded_at, duplicate,
       NULL::text AS claimed, NULL::bigint AS claim_position,
       error_code, error_message, error_hint
FROM conductor_append_batch($1, $2, $3, $4, $5, $6, $7)
UNION ALL
SELECT -item, NULL, NULL, NULL, NULL, NULL, stream_id, claim_position,
       error_code, error_message, NULL
FROM conductor_claim_batch($8, $9, $10, $11, $12)
"""


def _refused_by_postgres(exc: Exception) -> dict[str, Any]:
    """A lone write's error, in the shape of a batch's row."""
    if isinstance(exc, asyncpg.PostgresError):
        return {
            "error_code": exc.sqlstate,
            "error_message": str(exc),
            "error_hint": getattr(exc, "hint", None),
        }
    # The driver could not encode the arguments.
    return {"error_code": "22000", "error_message": str(exc), "error_hint": None}


class EventStore(EventReader):
    """The append-only event store: the reads, and every write through `append` or `claim`.

    Appends and claims that arrive while another write is in flight are sent together in one
    transaction (one round trip, one commit): concurrent writers share a WAL flush instead of
    taking turns at the append lock, one commit each. Each still succeeds or fails on its own.
    """

    MAX_BATCH = 64  # each member is a subtransaction; PostgreSQL caches 64 per transaction

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self._pending: list[_Pending] = []
        self._busy = False
        self._writer: asyncio.Task[None] | None = None

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append events to one stream, atomically with the projections they update.

        `expected_version` None appends at any version, 0 demands a new stream, n demands the
        stream be at n (else ConcurrencyError, nothing stored). A repeated `idempotency_key`
        returns the first append's result with `duplicate=True` and stores nothing.
        """
        if not events:
            raise ValueError("append needs at least one event")
        check_storable(stream_id, events, idempotency_key)
        pending = _PendingAppend(
            stream_id, events, expected_version, idempotency_key, self._future()
        )
        return await self._submit(pending, pending.result)

    async def claim(
        self,
        kind: str,
        agent_id: str,
        metadata: dict[str, Any],
        *,
        route_keys: Sequence[str] | None = None,
        unrouted: bool = True,
    ) -> Claim | None:
        """Hand the top of the `issue` or `review` queue to an agent, or None when empty.

        Claims are serialised with every append, so each queued issue goes to one agent only.
        With `route_keys`, only issues of repos whose route key is one of them are taken, and
        issues of repos without a route key only when `unrouted`; the filter runs in the same
        locked statement as the claim.
        """
        keys = None if route_keys is None else list(route_keys)
        check_claimable(kind, agent_id, metadata, keys)
        pending = _PendingClaim(kind, agent_id, metadata, keys, unrouted, self._future())
        return await self._submit(pending, pending.result)

    @staticmethod
    def _future() -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, pending: _Pending, result: asyncio.Future[T]) -> T:
        if self._busy:
            # Another write is in flight: ride along in the next batch. Shielded, so a
            # caller that gives up (a dropped request) cannot cancel other callers' writes.
            self._pending.append(pending)
            try:
                return await asyncio.shield(result)
            except asyncio.CancelledError:
                self._withdraw(pending)
                raise
        # Nobody is writing: write this one here, then hand what queued meanwhile to a writer.
        self._busy = True
        try:
            await self._run_batch([pending])
        finally:
            self._hand_over()
        return result.result()

    def _withdraw(self, pending: _Pending) -> None:
        """A claim whose caller gave up before its batch was sent is not made: the agent
        would never hear of its issue, which would wait for stuck detection. (An append
        still lands: its caller may retry it with its idempotency key.)"""
        if isinstance(pending, _PendingClaim):
            for i, queued in enumerate(self._pending):
                if queued is pending:
                    del self._pending[i]
                    pending.result.cancel()
                    return

    def _hand_over(self) -> None:
        if self._pending:
            self._writer = asyncio.create_task(self._drain(), name="event-store-writer")
        else:
            self._busy = False

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.MAX_BATCH]
                del self._pending[: self.MAX_BATCH]
                await self._run_batch(batch)
        finally:
            for pending in self._pending:
                pending.result.cancel()
            self._pending.clear()
            self._busy = False

    async def _run_batch(self, batch: list[_Pending]) -> None:
        """Write a batch and settle each write's future with its result or its error.

        When the batch call itself fails (PostgreSQL refused a parameter of one member, which
        the checks before batching did not foresee), each member is retried alone, so only
        the bad one fails. A lost connection fails them all: alone they would fail the same.
        """
        try:
            rows = await self._write(batch)
        except asyncio.CancelledError:
            for pending in batch:
                pending.result.cancel()
            raise
        except BaseException as exc:
            if len(batch) > 1 and isinstance(exc, Exception) and not _is_connection_loss(exc):
                log.warning(
                    "a batch of %d writes failed (%s); retrying each alone",
                    len(batch),
                    type(exc).__name__,
                )
                for pending in batch:
                    await self._run_batch([pending])
                return
            failure = exc
            if _is_connection_loss(exc):
                failure = DatabaseUnavailableError(
                    f"PostgreSQL is unavailable: {type(exc).__name__}"
                )
            for pending in batch:
                if not pending.result.done():
                    pending.result.set_exception(failure)
            return
        for pending, row in zip(batch, rows, strict=True):
            if not pending.result.done():
                _settle(pending, row)

    async def _write(self, batch: list[_Pending]) -> list[Any]:
        """Each member's row: the lone write's own statement, or one batch statement."""
        if len(batch) == 1:
            only = batch[0]
            if isinstance(only, _PendingAppend):
                return [await self._append_one(only)]
            return [await self._claim_one(only)]
        appends = [p for p in batch if isinstance(p, _PendingAppend)]
        claims = [p for p in batch if isinstance(p, _PendingClaim)]
        ends: list[int] = []
        flat: list[NewEvent] = []
        for append in appends:
            flat.extend(append.events)
            ends.append(len(flat))
        rows = await self.pool.fetch(
            _BATCH,
            [p.stream_id for p in appends],
            [p.expected_version for p in appends],
            [p.idempotency_key for p in appends],
            ends,
            [e.type for e in flat],
            [e.data for e in flat],
            [e.metadata for e in flat],
            [c.kind for c in claims],
            [c.agent_id for c in claims],
            [c.metadata for c in claims],
            [None if c.route_keys is None else json.dumps(c.route_keys) for c in claims],
            [c.unrouted for c in claims],
        )
        by_item = {row["item"]: row for row in rows}
        numbered = {id(p): i + 1 for i, p in enumerate(appends)}
        numbered.update({id(c): -(i + 1) for i, c in enumerate(claims)})
        return [by_item[numbered[id(p)]] for p in batch]

    async def _append_one(self, pending: _PendingAppend) -> dict[str, Any]:
        """A lone append skips the batch function's subtransaction; same result shape."""
        try:
            row = await self.pool.fetchrow(
                "SELECT * FROM conductor_append($1, $2, $3, $4, $5, $6)",
                pending.stream_id,
                pending.expected_version,
                pending.idempotency_key,
                [e.type for e in pending.events],
                [e.data for e in pending.events],
                [e.metadata for e in pending.events],
            )
        except (*_DATA_ERRORS, asyncpg.PostgresError) as exc:
            return _refused_by_postgres(exc)
        assert row is not None
        return {**dict(row.items()), "error_code": None}

    async def _claim_one(self, pending: _PendingClaim) -> dict[str, Any]:
        """A lone claim, in the shape of a batch's row."""
        try:
            row = await self.pool.fetchrow(
                "SELECT * FROM conductor_claim($1, $2, $3, $4, $5)",
                pending.kind,
                pending.agent_id,
                pending.metadata,
                pending.route_keys,
                pending.unrouted,
            )
        except (*_DATA_ERRORS, asyncpg.PostgresError) as exc:
            return _refused_by_postgres(exc)
        if row is None:
            return {"claimed": None, "error_code": None}
        return {
            "claimed": row["stream_id"],
            "claim_position": row["claim_position"],
            "error_code": None,
        }

    async def assign(self, stream_id: str, agent_id: str, metadata: dict[str, Any]) -> int:
        """A person's assignment of a queued issue to an agent (ISSUE_ASSIGNED), serialised with
        the claims: Refused (nothing stored) when the issue is unknown, held or not queued, or
        the agent is paused. Returns the assignment's position."""
        with unavailable_on_connection_loss():
            try:
                value = await self.pool.fetchval(
                    "SELECT conductor_assign($1, $2, $3)", stream_id, agent_id, metadata
                )
            except asyncpg.PostgresError as exc:
                if exc.sqlstate == CONCURRENCY_SQLSTATE:
                    raise Refused(str(exc)) from None
                raise
        return int(value)
