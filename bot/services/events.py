"""Recording events and claiming work: the use cases behind `POST /api/events` and the claims."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.context import AppContext
from bot.errors import Forbidden, InvalidInput
from bot.services.routing import Router
from store import catalogue
from store.catalogue import AGENT_PATTERN, priority_from_labels
from store.events import AppendResult, NewEvent
from store.projections import Issue

_AGENT_ID_MAX = 64


@dataclass(frozen=True)
class Actor:
    """Who is writing: an agent proven by its token, or an unauthenticated caller."""

    name: str | None
    authenticated: bool
    source: str = "api"


def check_agent_id(agent_id: str | None) -> str:
    """A valid agent id from a query parameter, or InvalidInput naming the problem."""
    if not agent_id:
        raise InvalidInput("query parameter 'agentId' is required")
    if len(agent_id) > _AGENT_ID_MAX or not re.match(AGENT_PATTERN, agent_id):
        raise InvalidInput("query parameter 'agentId' is not a valid agent id")
    return agent_id


class EventService:
    """Validates, authorises and appends the events agents and tools send."""

    def __init__(self, context: AppContext) -> None:
        self.context = context

    async def record(
        self,
        payload: Any,
        actor: Actor,
        *,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Validate one event as the agents send it and append it to its stream.

        Raises InvalidInput (nothing stored) for an unknown type or a payload that breaks the
        type's schema, and Forbidden when an agent's token speaks for another agent.
        """
        if not isinstance(payload, dict):
            raise InvalidInput("the body must be a JSON object")
        event_type = payload.get("type")
        data = catalogue.validate(event_type, payload)
        agent = data.get("agentId")
        if actor.authenticated and agent is not None and agent != actor.name:
            raise Forbidden(f"the token belongs to {actor.name!r}, not to agentId {agent!r}")
        if event_type == "ISSUE_APPROVED" and "priority" not in data:
            data["priority"] = priority_from_labels(
                data.get("labels", []), self.context.settings.priority_labels
            )
        metadata: dict[str, Any] = {"source": actor.source}
        if actor.name:
            metadata["actor"] = actor.name
        if correlation_id:
            metadata["correlationId"] = correlation_id
        stream_id = catalogue.stream_for(str(event_type), data)
        return await self.context.store.append(
            stream_id,
            [NewEvent(str(event_type), data, metadata)],
            idempotency_key=idempotency_key,
        )

    async def claim(self, kind: str, agent_id: str, actor: Actor) -> Issue | None:
        """Atomically give the top queued issue (`issue`) or PR awaiting review (`review`)
        that routing lets this agent take; None when there is nothing for it."""
        if actor.authenticated and actor.name != agent_id:
            raise Forbidden(f"the token belongs to {actor.name!r}, not to agentId {agent_id!r}")
        metadata = {"source": actor.source, "actor": actor.name or agent_id}
        router = Router.from_settings(self.context.settings)
        if kind == "review":
            if not router.may_review(agent_id):
                return None
            claim = await self.context.store.claim(kind, agent_id, metadata)
        else:
            scope = router.scope(agent_id)
            claim = await self.context.store.claim(
                kind, agent_id, metadata, route_keys=scope.keys, unrouted=scope.unrouted
            )
        if claim is None:
            return None
        return await self.context.projections.issue(claim.stream_id)
