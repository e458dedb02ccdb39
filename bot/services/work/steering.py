"""Steering the work: people approve, prioritise, hold, requeue and assign issues, and pause
agents; the `/issue` and `/agent` commands and the steering API share this service.

Where GitHub holds the fact (approval, priority and a hold are labels), the label changes on
GitHub first and the event is recorded only once GitHub took it, with GitHub's labels, so the
next sync agrees instead of undoing it. Requeue, assign, pause and resume are Conductor-E's own
facts, only events. Every action leaves an audit trail; the README's "Steering" has the rules.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.context import AppContext
from bot.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    Unavailable,
    UpstreamError,
    UserFacingError,
)
from bot.integrations.github import (
    GitHubClient,
    GitHubError,
    GitHubNotFound,
    GitHubUnavailable,
)
from bot.services.audit import AuditService
from bot.services.github.sync import approval_key, approval_payload
from bot.services.work.queries import parse_issue_ref
from bot.services.work.routing import RoutingService
from store import catalogue
from store.catalogue import AGENT_PATTERN, priority_from_labels
from store.errors import ConcurrencyError, Refused
from store.events import NewEvent
from store.projections import Issue

T = TypeVar("T")

PRIORITIES = ("critical", "high", "normal")
# States an issue can be taken back from: an agent has it, or it failed.
REQUEUEABLE = frozenset({"assigned", "in_progress", "in_review", "failed"})
_AGENT_ID_MAX = 129


@dataclass(frozen=True)
class Steered:
    """What one steering action changed: `target` is the issue or agent, `summary` one line
    for the person (or script) who asked."""

    action: str
    target: str
    summary: str
    position: int


def check_agent(agent_id: str) -> str:
    value = agent_id.strip()
    if not value or len(value) > _AGENT_ID_MAX or not re.fullmatch(AGENT_PATTERN, value):
        raise InvalidInput(f"{value[:70]!r} is not a valid agent id")
    return value


def check_priority(priority: str) -> str:
    value = priority.strip().lower()
    if value not in PRIORITIES:
        raise InvalidInput(f"priority must be one of {', '.join(PRIORITIES)}, not {value[:20]!r}")
    return value


def canonical_label(priority: str, mapping: dict[str, str]) -> str | None:
    """The label that says `priority` on GitHub: `priority:<p>` when the mapping has it, else
    the first label mapped to it; None when no label maps to it (normal, by default)."""
    preferred = f"priority:{priority}"
    if mapping.get(preferred) == priority:
        return preferred
    return next((label for label, value in mapping.items() if value == priority), None)


def _reason(reason: str | None) -> str | None:
    text = (reason or "").strip()
    if len(text) > 1_000:
        raise InvalidInput("the reason is longer than 1000 characters")
    return text or None


class SteeringService:
    def __init__(
        self,
        context: AppContext,
        routing: RoutingService,
        *,
        audit: AuditService | None = None,
        github: GitHubClient | None = None,
        source: str = "discord",
    ) -> None:
        self.context = context
        self.routing = routing
        self.audit = audit or AuditService(context.store, source=source)
        self.github = github if github is not None else context.github
        self.source = source

    # --- helpers ---------------------------------------------------------------------------
    async def _audited(
        self, actor: str, action: str, target: str, work: Callable[[], Awaitable[Steered]]
    ) -> Steered:
        trail = self.audit.begin(actor, action, target)
        await trail.requested()
        try:
            done = await work()
        except UserFacingError as exc:
            await trail.failed(exc.message)
            raise
        except Exception as exc:
            await trail.failed(f"unexpected error ({type(exc).__name__})")
            raise
        await trail.completed(done.summary)
        return done

    async def issue(self, reference: str) -> Issue:
        stream_id = parse_issue_ref(reference)
        issue = await self.context.projections.issue(stream_id)
        if issue is None:
            raise NotFound(f"{stream_id} is not known: it was never approved for the agents")
        return issue

    def _metadata(self, actor: str) -> dict[str, Any]:
        return {"source": self.source, "actor": actor}

    async def _append(
        self,
        stream_id: str,
        event_type: str,
        payload: dict[str, Any],
        actor: str,
        *,
        expected_version: int | None = None,
    ) -> int:
        data = catalogue.validate(event_type, payload, internal=True)
        result = await self.context.store.append(
            stream_id,
            [NewEvent(event_type, data, self._metadata(actor))],
            expected_version=expected_version,
        )
        return result.last_position

    def _gh(self) -> GitHubClient:
        if self.github is None:
            raise Unavailable(
                "GitHub is not configured (GITHUB_TOKEN): labels cannot be changed, so nothing "
                "was changed"
            )
        return self.github

    async def _on_github(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except (GitHubError, GitHubUnavailable, GitHubNotFound) as exc:
            raise UpstreamError(
                f"GitHub failed to {what}: {exc.message}. Nothing was changed."
            ) from None

    async def _set_priority_labels(
        self, issue_repo: str, number: int, priority: str
    ) -> tuple[str, ...]:
        """Add the priority's canonical label, then remove labels that say another priority.

        In that order, so a failure half way leaves GitHub with both labels rather than none;
        the sync follows GitHub's labels either way."""
        mapping = self.context.settings.priority_labels
        github = self._gh()
        wanted = canonical_label(priority, dict(mapping))
        labels: tuple[str, ...]
        if wanted is not None:
            labels = await self._on_github(
                f"add the label {wanted!r}",
                lambda: github.add_labels(issue_repo, number, [wanted]),
            )
        else:
            got = await self._on_github(
                "read the issue", lambda: github.get_issue(issue_repo, number)
            )
            if got is None:
                raise NotFound(f"{issue_repo}#{number} is not on GitHub")
            labels = got.labels
        for label in [x for x in labels if mapping.get(x.lower()) not in (None, priority)]:
            labels = await self._on_github(
                f"remove the label {label!r}",
                lambda label=label: github.remove_label(issue_repo, number, label),  # type: ignore[misc]
            )
        return labels

    # --- issues ----------------------------------------------------------------------------
    async def hold(self, reference: str, actor: str, reason: str | None = None) -> Steered:
        issue = await self.issue(reference)
        why = _reason(reason)

        async def work() -> Steered:
            if issue.held:
                raise Conflict(f"{issue.stream_id} is already held by {issue.held_by}")
            github, label = self._gh(), self.context.settings.hold_label
            labels = await self._on_github(
                f"add the label {label!r}",
                lambda: github.add_labels(issue.repo, issue.number, [label]),
            )
            payload: dict[str, Any] = {
                "repo": issue.repo,
                "issueNumber": issue.number,
                "labels": list(labels)[:100],
            }
            if why:
                payload["reason"] = why
            position = await self._append(issue.stream_id, "ISSUE_HELD", payload, actor)
            because = f": {why}" if why else ""
            return Steered(
                "hold",
                issue.stream_id,
                f"{issue.stream_id} is held{because}. It is not handed out or merged until unheld.",
                position,
            )

        return await self._audited(actor, "issue hold", issue.stream_id, work)

    async def unhold(self, reference: str, actor: str) -> Steered:
        issue = await self.issue(reference)

        async def work() -> Steered:
            if not issue.held:
                raise Conflict(f"{issue.stream_id} is not held")
            github, label = self._gh(), self.context.settings.hold_label
            labels = await self._on_github(
                f"remove the label {label!r}",
                lambda: github.remove_label(issue.repo, issue.number, label),
            )
            payload = {
                "repo": issue.repo,
                "issueNumber": issue.number,
                "labels": list(labels)[:100],
            }
            position = await self._append(issue.stream_id, "ISSUE_UNHELD", payload, actor)
            return Steered(
                "unhold",
                issue.stream_id,
                f"{issue.stream_id} is no longer held ({issue.state}).",
                position,
            )

        return await self._audited(actor, "issue unhold", issue.stream_id, work)

    async def priority(self, reference: str, priority: str, actor: str) -> Steered:
        issue = await self.issue(reference)
        wanted = check_priority(priority)

        async def work() -> Steered:
            if issue.priority == wanted:
                raise Conflict(f"{issue.stream_id} is {wanted} already")
            labels = await self._set_priority_labels(issue.repo, issue.number, wanted)
            payload = {
                "repo": issue.repo,
                "issueNumber": issue.number,
                "priority": wanted,
                "labels": list(labels)[:100],
            }
            position = await self._append(issue.stream_id, "PRIORITY_CHANGED", payload, actor)
            return Steered(
                "priority",
                issue.stream_id,
                f"{issue.stream_id}: priority {issue.priority} → {wanted}.",
                position,
            )

        return await self._audited(actor, "issue priority", issue.stream_id, work)

    async def approve(self, reference: str, actor: str, priority: str | None = None) -> Steered:
        stream_id = parse_issue_ref(reference)
        wanted = check_priority(priority) if priority else None
        repo, number = stream_id.rsplit("#", 1)

        async def work() -> Steered:
            current = await self.context.projections.issue(stream_id)
            if current is not None and current.state != "withdrawn":
                raise Conflict(f"{stream_id} is approved already ({current.state})")
            github = self._gh()
            found = await self._on_github(
                "read the issue", lambda: github.get_issue(repo, int(number))
            )
            if found is None or found.is_pull_request:
                raise NotFound(f"{stream_id} is not an issue on GitHub")
            if found.state != "open":
                raise Conflict(f"{stream_id} is closed on GitHub")
            label = self.context.settings.agent_ready_label
            labels = await self._on_github(
                f"add the label {label!r}",
                lambda: github.add_labels(found.repo, found.number, [label]),
            )
            if wanted is not None:
                labels = await self._set_priority_labels(found.repo, found.number, wanted)
            mapping = self.context.settings.priority_labels
            payload = approval_payload(found, mapping)
            payload["labels"] = [x[:100] for x in labels[:100]]
            payload["priority"] = priority_from_labels(labels, mapping)
            if current is not None:
                payload["repo"], payload["issueNumber"] = current.repo, current.number
            stream = current.stream_id if current is not None else stream_id
            data = catalogue.validate("ISSUE_APPROVED", payload, internal=True)
            # The sync's key: a sync that runs meanwhile stores the same approval once.
            withdrawals = sum(
                1
                for e in await self.context.store.read_stream(stream)
                if e.type == "ISSUE_WITHDRAWN"
            )
            result = await self.context.store.append(
                stream,
                [NewEvent("ISSUE_APPROVED", data, self._metadata(actor))],
                idempotency_key=approval_key(found.node_id, stream, 1 + withdrawals),
            )
            return Steered(
                "approve",
                stream,
                f"{stream} is approved ({payload['priority']}) and queued.",
                result.last_position,
            )

        return await self._audited(actor, "issue approve", stream_id, work)

    async def requeue(self, reference: str, actor: str, reason: str | None = None) -> Steered:
        issue = await self.issue(reference)
        why = _reason(reason)

        async def work() -> Steered:
            # The state is judged at the stream's version the append then demands, so an
            # event landing meanwhile (a merge, a claim) refuses the requeue instead of undoing it.
            events = await self.context.store.read_stream(issue.stream_id)
            version = events[-1].version if events else 0
            now = await self.context.projections.issue(issue.stream_id)
            state = now.state if now is not None else issue.state
            if state not in REQUEUEABLE:
                raise Conflict(
                    f"{issue.stream_id} is {state}: only an issue an agent has "
                    "(assigned, in progress, in review) or that failed can be requeued"
                )
            payload: dict[str, Any] = {"repo": issue.repo, "issueNumber": issue.number}
            if issue.assignee:
                payload["agentId"] = issue.assignee
            if why:
                payload["reason"] = why
            try:
                position = await self._append(
                    issue.stream_id, "ISSUE_REQUEUED", payload, actor, expected_version=version
                )
            except ConcurrencyError:
                raise Conflict(
                    f"{issue.stream_id} changed while it was being requeued; look again"
                ) from None
            taken = f" from {issue.assignee}" if issue.assignee else ""
            return Steered(
                "requeue",
                issue.stream_id,
                f"{issue.stream_id} was taken back{taken} and is queued again ({issue.priority}).",
                position,
            )

        return await self._audited(actor, "issue requeue", issue.stream_id, work)

    async def check_assign(self, reference: str, agent_id: str) -> Issue:
        """The issue, when routing lets `agent_id` take it; else Conflict saying why."""
        issue = await self.issue(reference)
        agent = check_agent(agent_id)
        if issue.held:
            raise Conflict(f"{issue.stream_id} is held by {issue.held_by}; unhold it first")
        if issue.state != "queued":
            raise Conflict(f"{issue.stream_id} is {issue.state}, not queued; requeue it first")
        route = await self.routing.route(issue.repo)
        if not route.admits(agent.split("/")[0]):
            names = ", ".join(route.agents or ())
            raise Conflict(
                f"routing says {agent} cannot take {issue.stream_id}: {route.why} → {names}"
            )
        return issue

    async def assign(self, reference: str, agent_id: str, actor: str) -> Steered:
        stream_id = parse_issue_ref(reference)

        async def work() -> Steered:
            issue = await self.check_assign(reference, agent_id)
            agent = check_agent(agent_id)
            try:
                position = await self.context.store.assign(
                    issue.stream_id, agent, self._metadata(actor)
                )
            except Refused as exc:
                raise Conflict(str(exc)) from None
            return Steered(
                "assign", issue.stream_id, f"{issue.stream_id} is assigned to {agent}.", position
            )

        return await self._audited(actor, "issue assign", stream_id, work)

    # --- agents ----------------------------------------------------------------------------
    async def _paused(self, agent_id: str) -> bool:
        found = await self.context.projections.agent(
            agent_id, self.context.clock(), self.context.stale_after
        )
        return found is not None and found.paused

    async def pause(self, agent_id: str, actor: str, reason: str | None = None) -> Steered:
        agent = check_agent(agent_id)
        why = _reason(reason)

        async def work() -> Steered:
            if await self._paused(agent):
                raise Conflict(f"{agent} is paused already")
            payload: dict[str, Any] = {"agentId": agent}
            if why:
                payload["reason"] = why
            position = await self._append(agent, "AGENT_PAUSED", payload, actor)
            return Steered(
                "pause",
                agent,
                f"{agent} is paused: it is handed nothing new (its current work is left alone).",
                position,
            )

        return await self._audited(actor, "agent pause", agent, work)

    async def resume(self, agent_id: str, actor: str) -> Steered:
        agent = check_agent(agent_id)

        async def work() -> Steered:
            if not await self._paused(agent):
                raise Conflict(f"{agent} is not paused")
            position = await self._append(agent, "AGENT_RESUMED", {"agentId": agent}, actor)
            return Steered("resume", agent, f"{agent} is resumed: it takes work again.", position)

        return await self._audited(actor, "agent resume", agent, work)
