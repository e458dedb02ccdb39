"""The agent runtime's activity log (`POST /api/agent-logs`, its src/agent-log.js).

The runtime buffers its log lines and posts them every 2 s as `{agentId, entries}`, each entry
`{ts, agentId, level, message, ...meta}` (meta: repo, issueNumber, ...). It ignores every
answer, so a line is refused only alone: a batch keeps its good lines and counts the rest as
dropped. Each agent keeps its newest KEEP_PER_AGENT lines.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from bot.context import AppContext
from bot.errors import InvalidInput
from bot.services.intake.events import Actor, EventService
from store.agent_logs import AgentLogLine, AgentLogs, StoredAgentLogLine
from store.catalogue import AGENT_PATTERN
from store.storable import unstorable

MAX_ENTRIES = 500  # per request: 2 s of a busy agent is far fewer
MAX_TEXT = 4_000
MAX_LEVEL = 32
KEEP_PER_AGENT = 5_000
CUT = "… [cut]"
_OWN_FIELDS = ("ts", "agentId", "level", "message")


def _timestamp(value: Any) -> datetime | None:
    """The entry's own time (the runtime sends ISO 8601 with `Z`); anything else: unknown."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _text(text: str) -> str:
    """The text as PostgreSQL can hold it: NUL and lone surrogates become U+FFFD."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _line(entry: Any) -> AgentLogLine | None:
    """One entry as a line (what cannot be stored of its text replaced, of its meta left
    out), or None when it is no entry at all."""
    if not isinstance(entry, dict):
        return None
    message = entry.get("message")
    if not isinstance(message, str):
        message = json.dumps(message, default=str)
    message = _text(message)
    if len(message) > MAX_TEXT:
        message = message[: MAX_TEXT - len(CUT)] + CUT
    level = entry.get("level")
    level = _text(level[:MAX_LEVEL]) if isinstance(level, str) else None
    meta = {key: value for key, value in entry.items() if key not in _OWN_FIELDS}
    if unstorable(meta) is not None or len(json.dumps(meta)) > MAX_TEXT:
        meta = {"metaDropped": True}
    return AgentLogLine(_timestamp(entry.get("ts")), level, message, meta)


class AgentLogService:
    """Keeps and reads the agents' activity logs."""

    def __init__(self, context: AppContext) -> None:
        self.logs = AgentLogs(context.pool)

    async def add(self, body: Any, actor: Actor) -> tuple[int, int]:
        """Store a batch `{agentId, entries}`; (lines kept, entries dropped)."""
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        agent_id = body.get("agentId")
        if not isinstance(agent_id, str) or not re.fullmatch(AGENT_PATTERN, agent_id):
            raise InvalidInput("field 'agentId' must be an agent id")
        EventService.authorise(actor, agent_id)
        entries = body.get("entries")
        if not isinstance(entries, list):
            raise InvalidInput("field 'entries' must be a JSON array")
        lines = [line for line in map(_line, entries[:MAX_ENTRIES]) if line is not None]
        if lines:
            await self.logs.add(agent_id, lines, keep=KEEP_PER_AGENT)
        return len(lines), len(entries) - len(lines)

    async def recent(self, agent_id: str, limit: int) -> list[StoredAgentLogLine]:
        """The agent's newest lines, newest first."""
        return await self.logs.recent(agent_id, limit)
