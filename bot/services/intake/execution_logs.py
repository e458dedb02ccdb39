"""Execution logs: what the agent runtime's stream consumer reports about each run.

A run is created (`EXECUTION_LOG_STARTED`), gets steps and log lines, and is completed, each as
an event on the stream `execution-log#<id>`; the `execution_logs` projection answers the reads.
Every run is bounded: at most MAX_STEPS steps and MAX_LOG_LINES log lines, a step's detail and a
line's message cut to MAX_TEXT characters (the cut is marked, never refused).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from bot.context import AppContext
from bot.errors import Conflict, InvalidInput, NotFound, quoted
from bot.services.intake.events import Actor, EventService
from store import catalogue
from store.errors import ConcurrencyError
from store.events import NewEvent
from store.projections import ExecutionLog

MAX_STEPS = 100
MAX_LOG_LINES = 1_000
MAX_TEXT = 4_000
CUT = "… [cut]"
_ID_LENGTH = 32
_RETRIES = 5


def _cut(item: Any, field: str) -> Any:
    """The item with its text `field` cut to MAX_TEXT characters (anything else as given)."""
    if isinstance(item, dict) and isinstance(item.get(field), str):
        text = item[field]
        if len(text) > MAX_TEXT:
            return {**item, field: text[: MAX_TEXT - len(CUT)] + CUT}
    return item


def _items(value: Any, field: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(f"{what} must be a JSON array")
    return [_cut(item, field) for item in value]


class ExecutionLogService:
    """Creates, extends and reads execution logs."""

    def __init__(self, context: AppContext) -> None:
        self.context = context

    async def create(self, body: Any, actor: Actor) -> ExecutionLog:
        """A new run from the runtime's create body; its id is ours."""
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        payload = {key: value for key, value in body.items() if key != "type"}
        if "steps" in payload:
            payload["steps"] = _items(payload["steps"], "detail", "field 'steps'")
            if len(payload["steps"]) > MAX_STEPS:
                raise InvalidInput(f"a run holds at most {MAX_STEPS} steps")
        payload["executionLogId"] = uuid.uuid4().hex
        data = catalogue.validate("EXECUTION_LOG_STARTED", payload, internal=True)
        EventService.authorise(actor, data.get("agentId"))
        stream_id = catalogue.stream_for("EXECUTION_LOG_STARTED", data)
        await self.context.store.append(
            stream_id,
            [NewEvent("EXECUTION_LOG_STARTED", data, EventService.metadata(actor))],
            expected_version=0,
        )
        return await self.get(data["executionLogId"])

    async def add_step(self, log_id: str, body: Any, actor: Actor) -> ExecutionLog:
        """Append one step `{type, status, detail, costUsd, turns}`."""
        await self.get(log_id)  # an unknown id is a 404 whatever the body
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        step = {"step": _cut(body, "detail")}

        def check(log: ExecutionLog) -> None:
            if len(log.steps) >= MAX_STEPS:
                raise Conflict(f"execution log {log.id} already holds {MAX_STEPS} steps")

        return await self._append(log_id, "EXECUTION_LOG_STEP", step, actor, check)

    async def add_lines(self, log_id: str, body: Any, actor: Actor) -> tuple[ExecutionLog, int]:
        """Append log lines (an array of `{timestamp, level, message}`, or `{entries: [...]}`).

        Keeps the lines that fit in the run's bound; returns the run and how many were left out.
        """
        log = await self.get(log_id)
        entries = body.get("entries") if isinstance(body, dict) else body
        lines = _items(entries, "message", "the body (log lines)")
        room = max(MAX_LOG_LINES - len(log.log_lines), 0)
        if lines and room == 0:
            raise Conflict(f"execution log {log_id} already holds {MAX_LOG_LINES} log lines")

        def check(log: ExecutionLog) -> None:
            if len(log.log_lines) + len(lines[:room]) > MAX_LOG_LINES:
                raise Conflict(f"execution log {log.id} already holds {MAX_LOG_LINES} log lines")

        log = await self._append(
            log_id, "EXECUTION_LOG_LINES", {"entries": lines[:room]}, actor, check
        )
        return log, len(lines) - len(lines[:room])

    async def complete(self, log_id: str, body: Any, actor: Actor) -> ExecutionLog:
        """Close a run with its totals (or just `{status: "failed"}`)."""
        await self.get(log_id)
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        totals = {k: v for k, v in body.items() if k != "executionLogId"}
        return await self._append(log_id, "EXECUTION_LOG_COMPLETED", totals, actor, None)

    async def get(self, log_id: str) -> ExecutionLog:
        """One run, or NotFound."""
        if len(log_id) != _ID_LENGTH or not all(c in "0123456789abcdef" for c in log_id):
            raise NotFound(f"no execution log {quoted(log_id)}")
        log = await self.context.projections.execution_log(log_id)
        if log is None:
            raise NotFound(f"no execution log {quoted(log_id)}")
        return log

    async def find(
        self, repo: str | None, issue_number: int | None, limit: int = 50
    ) -> list[ExecutionLog]:
        """Runs, newest first, of a repo and/or an issue."""
        return await self.context.projections.execution_logs(repo, issue_number, limit)

    async def _append(
        self,
        log_id: str,
        event_type: str,
        payload: dict[str, Any],
        actor: Actor,
        check: Callable[[ExecutionLog], None] | None,
    ) -> ExecutionLog:
        data = catalogue.validate(event_type, {**payload, "executionLogId": log_id}, internal=True)
        for _ in range(_RETRIES):
            log = await self.get(log_id)
            EventService.authorise(actor, log.agent_id)
            if check is not None:
                check(log)
            try:
                await self.context.store.append(
                    log.stream_id,
                    [NewEvent(event_type, data, EventService.metadata(actor))],
                    expected_version=log.version,
                )
            except ConcurrencyError:
                continue  # another post to this run landed first: check the bound again
            return await self.get(log_id)
        raise Conflict(f"execution log {log_id} is being written by others; retry")
