"""GitHub webhooks: signature check, delivery → events, and recording them once per delivery.

`verify_signature` and `events_for_delivery` are pure. `events_for_delivery` returns the events
a delivery implies *on its face*; `WebhookService.handle` then checks each against the issues
projection (`should_append`) before appending, because whether a closed issue is withdrawn, or
a PR_CREATED is news, depends on what we already know. What is mapped:

* `issues`: `labeled` with the agent-ready label, or `opened`/`reopened` carrying it →
  ISSUE_APPROVED (kept only when the issue is new to us or withdrawn); `unlabeled` agent-ready →
  ISSUE_WITHDRAWN; `closed`, `deleted`, `transferred` → ISSUE_WITHDRAWN (kept only while the
  issue is still queued: an issue closed by its merged PR is not withdrawn); another label
  added or removed on an agent-ready issue → PRIORITY_CHANGED (kept when the priority moves).
* `pull_request`: `opened` whose body says `Closes|Fixes|Resolves #N` (any of GitHub's closing
  keywords, also `owner/repo#N`) → PR_CREATED on each issue N with prNumber; `closed` with
  `merged: true` → MERGED. A PR closed unmerged records nothing.
* `pull_request_review` `submitted`: approved → REVIEW_PASSED, changes_requested →
  REVIEW_DISPUTED (commented → nothing).
* `check_suite` `completed`: success → CI_PASSED; failure or timed_out → CI_FAILED; other
  conclusions (neutral, skipped, cancelled, stale, action_required) → nothing.
  `check_run` `completed`: failure or timed_out → CI_FAILED; a single run's success records
  nothing, since other runs of the suite may still fail — the suite's completion reports it.
* `push` to the repo's default branch whose commits add, modify or remove `.rig-agent.yaml`
  → the file is re-read (bot/services/work/repo_config), which records REPO_CONFIG_CHANGED or
  REPO_CONFIG_INVALID. An issue approved in a repo never seen before has its file read first,
  so that its first claim already follows the repo's routing.
* `ping` and everything else → nothing.

Then the merge gate (bot/services/merge_gate/gate) is asked about the delivery's PRs, in repos in
CONDUCTOR_MERGE_REPOS: `pull_request` (opened, synchronize, ready_for_review, labeled,
unlabeled, closed, ...), `pull_request_review`, `check_suite` / `check_run` completed, and
`status` (which names a commit, so every PR followed in its repo is asked about). MERGED is
appended under the gate's key (`merged:<issue>:<pr>`), so the webhook and the gate record a
merge once between them.

Which issue a PR event belongs to: the closing references of the PR body when the payload has
the body (pull_request, pull_request_review), plus the issues the projection records with that
PR number (`pr_issues`, looked up by the service); check events carry no PR body, so they rely
on the projection only. Lifecycle events (PR, review, CI) are kept only for issues the
projection knows, so a PR that closes an issue Conductor-E never approved adds no row.
Repos outside the managed repos / org are ignored (when either is configured).
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
from bot.services.github.sync import ACTIVE_STATES
from bot.services.merge_gate.gate import MergeGate
from bot.services.merge_gate.policy import Decision, gate_asked_by, merged_key
from bot.services.work.pull_requests import PullRequestService, closing_references, in_scope
from bot.services.work.repo_config import CONFIG_PATH, RepoConfigService
from bot.settings import Settings
from store import catalogue
from store.catalogue import priority_from_labels
from store.errors import EventValidationError
from store.events import NewEvent
from store.projections import Issue

log = logging.getLogger(__name__)

SIGNATURE_PREFIX = "sha256="
SOURCE = "github-webhook"
CI_FAILURES = frozenset({"failure", "timed_out"})
# Lifecycle events about a PR count only while the issue is being worked or reviewed.
WORKING_STATES = frozenset({"assigned", "in_progress", "in_review"})

Mapped = tuple[str, NewEvent]


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


def _label_names(issue: Mapping[str, Any]) -> list[str]:
    names = []
    for label in issue.get("labels") or []:
        name = label.get("name") if isinstance(label, Mapping) else label
        if isinstance(name, str):
            names.append(name)
    return names


def _event(event_type: str, data: dict[str, Any], event_name: str, action: str | None) -> NewEvent:
    metadata = {"actor": "github", "source": SOURCE, "githubEvent": event_name}
    if action:
        metadata["action"] = action
    return NewEvent(event_type, data, metadata)


def _issue_events(payload: Mapping[str, Any], repo: str, settings: Settings) -> list[Mapped]:
    action = payload.get("action")
    issue = payload.get("issue") or {}
    if "pull_request" in issue or not issue.get("number"):
        return []
    number = int(issue["number"])
    stream = catalogue.issue_stream(repo, number)
    ready = settings.agent_ready_label.lower()
    labels = _label_names(issue)
    has_ready = any(name.lower() == ready for name in labels)
    changed = str((payload.get("label") or {}).get("name") or "")
    base = {"repo": repo, "issueNumber": number}

    def approved() -> Mapped:
        data = {
            **base,
            "title": str(issue.get("title") or "")[:1_000],
            "url": str(issue.get("html_url") or "")[:1_000],
            "labels": [name[:100] for name in labels[:100]],
            "priority": priority_from_labels(labels, settings.priority_labels),
        }
        return stream, _event("ISSUE_APPROVED", data, "issues", action)

    def withdrawn(reason: str) -> Mapped:
        return stream, _event("ISSUE_WITHDRAWN", {**base, "reason": reason}, "issues", action)

    is_open = issue.get("state", "open") == "open"
    if action == "labeled" and changed.lower() == ready:
        return [approved()] if is_open else []
    if action in ("opened", "reopened") and has_ready:
        return [approved()]
    if action == "unlabeled" and changed.lower() == ready:
        return [withdrawn(f"the {settings.agent_ready_label!r} label was removed on GitHub")]
    if action in ("labeled", "unlabeled") and has_ready:
        data = {
            **base,
            "priority": priority_from_labels(labels, settings.priority_labels),
            "labels": [name[:100] for name in labels[:100]],
        }
        return [(stream, _event("PRIORITY_CHANGED", data, "issues", action))]
    if action == "closed":
        return [withdrawn(f"closed on GitHub ({issue.get('state_reason') or 'completed'})")]
    if action == "deleted":
        return [withdrawn("deleted on GitHub")]
    if action == "transferred":
        return [withdrawn("transferred to another repository on GitHub")]
    return []


def _pr_targets(
    pr: Mapping[str, Any], repo: str, pr_issues: Mapping[int, Sequence[int]]
) -> list[tuple[str, int]]:
    targets = closing_references(pr.get("body"), repo)
    for number in pr_issues.get(int(pr.get("number") or 0), ()):
        if (repo, number) not in targets:
            targets.append((repo, number))
    return targets


def events_for_delivery(
    event_name: str,
    payload: Mapping[str, Any],
    settings: Settings,
    *,
    pr_issues: Mapping[int, Sequence[int]] | None = None,
) -> list[Mapped]:
    """The (stream id, event) pairs a delivery implies, before checking the projection.

    `pr_issues` maps PR numbers of the delivery's repo to the issue numbers the projection
    records for them (see `pull_request_numbers`); without it, PR events rely on the PR body.
    """
    repository = payload.get("repository") or {}
    repo = repository.get("full_name")
    if not isinstance(repo, str) or not in_scope(repo, settings):
        return []
    pr_issues = pr_issues or {}
    action = payload.get("action")
    mapped: list[Mapped] = []

    if event_name == "issues":
        return _issue_events(payload, repo, settings)

    if event_name == "pull_request":
        pr = payload.get("pull_request") or {}
        number = int(pr.get("number") or 0)
        data: dict[str, Any] = {"prNumber": number, "url": str(pr.get("html_url") or "")[:1_000]}
        if action == "opened":
            event_type = "PR_CREATED"
            targets = closing_references(pr.get("body"), repo)
        elif action == "closed" and pr.get("merged"):
            event_type = "MERGED"
            targets = _pr_targets(pr, repo, pr_issues)
        else:
            return []
        for target_repo, issue in targets:
            if in_scope(target_repo, settings):
                body = {"repo": target_repo, "issueNumber": issue, **data}
                stream = catalogue.issue_stream(target_repo, issue)
                mapped.append((stream, _event(event_type, body, event_name, action)))
        return mapped

    if event_name == "pull_request_review":
        if action != "submitted":
            return []
        state = str((payload.get("review") or {}).get("state") or "").lower()
        event_type = {"approved": "REVIEW_PASSED", "changes_requested": "REVIEW_DISPUTED"}.get(
            state, ""
        )
        if not event_type:
            return []
        pr = payload.get("pull_request") or {}
        data = {"prNumber": int(pr.get("number") or 0), "url": str(pr.get("html_url") or "")}
        for target_repo, issue in _pr_targets(pr, repo, pr_issues):
            if in_scope(target_repo, settings):
                body = {"repo": target_repo, "issueNumber": issue, **data}
                stream = catalogue.issue_stream(target_repo, issue)
                mapped.append((stream, _event(event_type, body, event_name, action)))
        return mapped

    if event_name in ("check_suite", "check_run"):
        if action != "completed":
            return []
        check = payload.get(event_name) or {}
        conclusion = str(check.get("conclusion") or "")
        if conclusion in CI_FAILURES:
            event_type = "CI_FAILED"
        elif conclusion == "success" and event_name == "check_suite":
            event_type = "CI_PASSED"
        else:
            return []
        for pr in check.get("pull_requests") or []:
            pr_number = int(pr.get("number") or 0)
            for issue in pr_issues.get(pr_number, ()):
                body = {"repo": repo, "issueNumber": issue, "prNumber": pr_number}
                stream = catalogue.issue_stream(repo, issue)
                mapped.append((stream, _event(event_type, body, event_name, action)))
        return mapped

    return []  # ping and every event we do not follow


# GitHub lists at most this many commits in a push payload; a longer push may hide the file.
PUSH_COMMITS_LISTED = 20


def push_touches_config(payload: Mapping[str, Any], settings: Settings) -> str | None:
    """The repo whose `.rig-agent.yaml` a push to its default branch may have changed."""
    repository = payload.get("repository") or {}
    repo = repository.get("full_name")
    if not isinstance(repo, str) or not in_scope(repo, settings) or payload.get("deleted"):
        return None
    branch = repository.get("default_branch") or repository.get("master_branch")
    if not branch or payload.get("ref") != f"refs/heads/{branch}":
        return None
    commits = payload.get("commits") or []
    if len(commits) >= PUSH_COMMITS_LISTED:
        return repo  # the list may be cut short: read the file to be sure
    for commit in commits:
        for key in ("added", "modified", "removed"):
            if CONFIG_PATH in (commit.get(key) or []):
                return repo
    return None


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
            pushed = (
                push_touches_config(payload, self.context.settings)
                if event_name == "push"
                else None
            )
        except MALFORMED as exc:
            raise _malformed(event_name, exc) from None
        if pushed is not None:
            await self._read_configs([pushed], result, force=True)
        pr_issues: dict[int, list[int]] = {}
        if numbers and isinstance(repo, str):
            pr_issues = await self._issues_for_prs(repo, numbers)
        try:
            mapped = events_for_delivery(
                event_name, payload, self.context.settings, pr_issues=pr_issues
            )
        except MALFORMED as exc:
            raise _malformed(event_name, exc) from None
        for index, (stream_id, event) in enumerate(mapped):
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
