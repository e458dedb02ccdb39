"""GitHub webhooks, the recorded side: verify the signature, read what a delivery implies
(bot/services/github/hooks, pure), keep what the issues projection says is news, and append
it once per delivery id; then re-read `.rig-agent.yaml` where a push changed it, and ask the
merge gate about the delivery's PRs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.context import AppContext
from bot.errors import InvalidInput
from bot.services.github.hooks import read_delivery
from bot.services.github.sync import ACTIVE_STATES
from bot.services.merge_gate.gate import MergeGate
from bot.services.merge_gate.policy import Decision, gate_asked_by, merged_key
from bot.services.work.pull_requests import PullRequestService, in_scope
from bot.services.work.repo_config import RepoConfigService
from store import catalogue
from store.errors import EventValidationError
from store.events import NewEvent
from store.projections import Issue

log = logging.getLogger(__name__)

SIGNATURE_PREFIX = "sha256="
# Lifecycle events about a PR count only while the issue is being worked or reviewed.
WORKING_STATES = frozenset({"assigned", "in_progress", "in_review"})


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is GitHub's X-Hub-Signature-256 of `body` under `secret`."""
    if not secret or not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    expected = SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def pull_request_numbers(event_name: str, payload: Mapping[str, Any]) -> list[int]:
    """The PR numbers a delivery is about, for looking their issues up in the projection."""
    if event_name in ("pull_request", "pull_request_review"):
        pr = payload.get("pull_request") or {}
        return [int(pr["number"])] if pr.get("number") else []
    if event_name in ("check_suite", "check_run"):
        check = payload.get(event_name) or {}
        return [int(pr["number"]) for pr in check.get("pull_requests") or [] if pr.get("number")]
    return []


def should_append(event: NewEvent, issue: Issue | None) -> bool:
    """Whether a mapped event is news, given the issue as the projection has it."""
    kind = event.type
    if kind == "ISSUE_APPROVED":
        return issue is None or issue.state == "withdrawn"
    if issue is None:
        return False  # we follow only issues we know
    if kind == "ISSUE_WITHDRAWN":
        return issue.state == "queued"
    if kind == "PRIORITY_CHANGED":
        return issue.state in ACTIVE_STATES and issue.priority != event.data.get("priority")
    pr_number = event.data.get("prNumber")
    if kind == "PR_CREATED":
        return (
            issue.state not in ("done", "withdrawn", "deploying") and issue.pr_number != pr_number
        )
    if kind == "MERGED":
        return issue.state in WORKING_STATES
    # Reviews and CI: about this issue's current PR, while it is worked, and not a fact an
    # agent has just posted itself.
    if issue.pr_number is not None and pr_number is not None and issue.pr_number != pr_number:
        return False
    return issue.state in WORKING_STATES and issue.last_event_type != kind


@dataclass
class WebhookResult:
    appended: list[tuple[str, str]] = field(default_factory=list)  # (stream id, type)
    duplicates: int = 0  # already recorded from an earlier delivery of the same id
    skipped: int = 0  # not news, given the projection
    gate: list[Decision] = field(default_factory=list)  # what the merge gate decided


# What reading a payload of the wrong shape raises (a field that should be an object, a
# number that is not one). Signed deliveries are GitHub's, but a 5xx is never the answer.
MALFORMED = (AttributeError, TypeError, ValueError, KeyError)


def _malformed(event_name: str, exc: BaseException) -> InvalidInput:
    return InvalidInput(f"malformed {event_name} delivery ({type(exc).__name__})")


class WebhookService:
    """Records what a GitHub delivery implies, once: a redelivery changes nothing."""

    def __init__(
        self,
        context: AppContext,
        merge_gate: MergeGate,
        pull_requests: PullRequestService,
        configs: RepoConfigService | None,
    ) -> None:
        self.context = context
        self.merge_gate = merge_gate
        self.pull_requests = pull_requests
        self.configs = configs

    async def handle(
        self, event_name: str, delivery_id: str, payload: Mapping[str, Any]
    ) -> WebhookResult:
        """Map a (verified) delivery to events and append the new ones.

        Each mapped event's idempotency key is `delivery:<delivery id>:<index>`.
        """
        result = WebhookResult()
        try:
            repo = (payload.get("repository") or {}).get("full_name")
            numbers = pull_request_numbers(event_name, payload)
        except MALFORMED as exc:
            raise _malformed(event_name, exc) from None
        pr_issues: dict[int, list[int]] = {}
        if numbers and isinstance(repo, str):
            pr_issues = await self._issues_for_prs(repo, numbers)
        try:
            delivery = await read_delivery(
                event_name,
                payload,
                self.context.settings,
                pr_issues=pr_issues,
                delivery_id=delivery_id,
            )
        except MALFORMED as exc:
            raise _malformed(event_name, exc) from None
        if delivery.configs:
            await self._read_configs(delivery.configs, result, force=True)
        for index, (stream_id, event) in enumerate(delivery.events):
            current = await self.context.projections.issue(stream_id)
            if not should_append(event, current):
                result.skipped += 1
                continue
            if event.type == "ISSUE_APPROVED":
                # Routing must know the repo before the issue can be claimed.
                await self._read_configs([event.data["repo"]], result, force=False)
            try:
                data = catalogue.validate(event.type, event.data, internal=True)
            except EventValidationError as exc:
                log.warning("webhook %s: %s dropped: %s", delivery_id, event.type, exc)
                result.skipped += 1
                continue
            key = f"delivery:{delivery_id}:{index}"
            if event.type == "MERGED":  # the gate records a merge under the same key
                key = merged_key(stream_id, data["prNumber"])
            stored = await self.context.store.append(
                stream_id,
                [NewEvent(event.type, data, {**event.metadata, "deliveryId": delivery_id})],
                idempotency_key=key,
            )
            if stored.duplicate:
                result.duplicates += 1
                continue
            result.appended.append((stream_id, event.type))
            if data.get("prNumber"):
                # The PR is known now: what Review-E said about it before lands on the issue.
                await self.pull_requests.link_pending(data["repo"], data["prNumber"])
        if isinstance(repo, str) and in_scope(repo, self.context.settings):
            await self._ask_gate(event_name, payload, repo, numbers, result)
        return result

    async def _ask_gate(
        self,
        event_name: str,
        payload: Mapping[str, Any],
        repo: str,
        numbers: Sequence[int],
        result: WebhookResult,
    ) -> None:
        """Ask the merge gate about the PRs the delivery may have made ready (or merged)."""
        gate = self.merge_gate
        if gate.github is None or not gate.listed(repo):
            return
        action = payload.get("action")
        if not gate_asked_by(event_name, action if isinstance(action, str) else None):
            return
        if event_name == "status":
            # A status names a commit, not a PR: ask about the PRs we follow in that repo.
            numbers = await gate.open_prs(repo)
        for number in numbers:
            decision = await gate.ask(repo, number, trigger=event_name)
            if decision is not None:
                result.gate.append(decision)

    async def _read_configs(
        self, repos: Iterable[str], result: WebhookResult, *, force: bool
    ) -> None:
        """Read the repos' .rig-agent.yaml (all of them, or those never read); a GitHub failure
        is logged and leaves the delivery's other work alone."""
        service = self.configs
        if service is None:
            return
        read = await (service.refresh(repos, force=True) if force else service.ensure(repos))
        for name in read.changed:
            result.appended.append((catalogue.repo_stream(name), "REPO_CONFIG_CHANGED"))
        for name in read.invalid:
            result.appended.append((catalogue.repo_stream(name), "REPO_CONFIG_INVALID"))
        for error in read.errors:
            log.warning("webhook: .rig-agent.yaml not read: %s", error)

    async def _issues_for_prs(self, repo: str, numbers: Sequence[int]) -> dict[int, list[int]]:
        """Issues the projection links to these PRs of `repo` (by their current PR)."""
        found: dict[int, list[int]] = {}
        for issue in await self.context.projections.issues_for_prs(repo, numbers):
            if issue.pr_number is not None:
                found.setdefault(issue.pr_number, []).append(issue.number)
        return found
