"""Recording events and claiming work: the use cases behind `POST /api/events` and the claims."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.context import AppContext
from bot.errors import Forbidden, InvalidInput, Unprocessable
from bot.services.merge_gate.gate import MergeGate
from bot.services.work.pull_requests import PR_SCOPED, MergeRequest, PullRequestService
from bot.services.work.routing import Router
from store import catalogue
from store.catalogue import AGENT_PATTERN, priority_from_labels
from store.events import AppendResult, NewEvent
from store.projections import Issue

VERDICTS = frozenset({"REVIEW_PASSED", "REVIEW_DISPUTED"})
_AGENT_ID_MAX = 129  # an agent id, "/" and the runtime's instance suffix


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
    if len(agent_id) > _AGENT_ID_MAX or not re.fullmatch(AGENT_PATTERN, agent_id):
        raise InvalidInput("query parameter 'agentId' is not a valid agent id")
    return agent_id


class EventService:
    """Validates, authorises and appends the events agents and tools send."""

    def __init__(
        self, context: AppContext, merge_gate: MergeGate, pull_requests: PullRequestService
    ) -> None:
        self.context = context
        self.merge_gate = merge_gate
        self.pull_requests = pull_requests

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

        An `idempotency_key` belongs to its actor: the token's agent, or without tokens the
        event's agent (else its stream), so one agent's key never swallows another's event.
        The same key again with the same event is a duplicate (stores nothing); with a
        different event it is refused with Unprocessable (422), nothing stored.
        """
        if not isinstance(payload, dict):
            raise InvalidInput("the body must be a JSON object")
        event_type = payload.get("type")
        data = catalogue.validate(event_type, payload)
        self.authorise(actor, data.get("agentId"))
        if event_type == "ISSUE_APPROVED" and "priority" not in data:
            data["priority"] = priority_from_labels(
                data.get("labels", []), self.context.settings.priority_labels
            )
        metadata = self.metadata(actor, correlation_id)
        stream_id = catalogue.stream_for(str(event_type), data)
        scoped_key = None
        if idempotency_key is not None:
            owner = actor.name if actor.authenticated else (data.get("agentId") or stream_id)
            scoped_key = f"api:{owner}:{idempotency_key}"
        prs = self.pull_requests
        gate = self.merge_gate
        verdict = event_type in VERDICTS and gate.github is not None and gate.listed(data["repo"])
        if verdict:
            # The head the PR had when the verdict arrived: a later push resets the review.
            head = await gate.head_of(data["repo"], data["prNumber"])
            if head:
                metadata["headSha"] = head
        if event_type in PR_SCOPED:
            result = await prs.record(str(event_type), data, metadata, idempotency_key=scoped_key)
        else:
            result = await self.context.store.append(
                stream_id, [NewEvent(str(event_type), data, metadata)], idempotency_key=scoped_key
            )
            if data.get("prNumber") is not None and catalogue.parse_issue_stream(stream_id):
                await prs.link_pending(data["repo"], data["prNumber"])
        if result.duplicate:
            await self._check_same_event(result, str(event_type), data)
        elif verdict:
            await gate.ask(data["repo"], data["prNumber"], trigger="verdict")
        return result

    async def _check_same_event(
        self, result: AppendResult, event_type: str, data: dict[str, Any]
    ) -> None:
        """A retry must carry the event its key first stored; anything else is a mistake."""
        stored = await self.context.store.read_all(result.first_position - 1, 1)
        first = stored[0] if stored else None
        if first is None or (first.type, first.data) != (event_type, data):
            raise Unprocessable(
                "the Idempotency-Key was already used for a different event; "
                "use a new key for a new event"
            )

    async def request_merge(self, body: Any, actor: Actor) -> MergeRequest:
        """Record `POST /api/merge {repo, prNumber}` as MERGE_REQUESTED and ask the merge gate.

        The request lands on the PR's issue (or waits for it, as a verdict does); the answer
        carries the gate's decision (`gate`: merged, waiting, blocked, off, ...) and why.
        """
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        payload = {key: value for key, value in body.items() if key != "type"}
        data = catalogue.validate("MERGE_REQUESTED", payload, internal=True)
        self.authorise(actor, data.get("agentId"))
        result = await self.pull_requests.record("MERGE_REQUESTED", data, self.metadata(actor))
        gate = self.merge_gate
        if gate.github is None or not gate.listed(data["repo"]):
            state, message = (
                "off",
                (
                    f"recorded; the merge gate is not on for {data['repo']} "
                    "(CONDUCTOR_MERGE_REPOS and GITHUB_TOKEN), so it is left to people"
                ),
            )
        else:
            decision = await gate.ask(data["repo"], data["prNumber"], trigger="api")
            state = decision.action if decision is not None else "error"
            message = decision.reason if decision is not None else "the gate could not decide"
        return MergeRequest(
            stream_id=result.stream_id, position=result.last_position, gate=state, message=message
        )

    @staticmethod
    def authorise(actor: Actor, agent: str | None) -> None:
        """Forbidden when an agent's token speaks for another agent (an instance suffix,
        `dev-e-node/abc12`, still speaks for `dev-e-node`)."""
        if actor.authenticated and agent is not None and agent.split("/")[0] != actor.name:
            raise Forbidden(f"the token belongs to {actor.name!r}, not to agentId {agent!r}")

    @staticmethod
    def metadata(actor: Actor, correlation_id: str | None = None) -> dict[str, Any]:
        """The metadata of an event an actor writes: source, actor and correlation id."""
        metadata: dict[str, Any] = {"source": actor.source}
        if actor.name:
            metadata["actor"] = actor.name
        if correlation_id:
            metadata["correlationId"] = correlation_id
        return metadata

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
