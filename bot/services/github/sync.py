"""Keep the issues projection in step with GitHub's agent-ready issues.

The label on GitHub is what approves an issue, and a webhook can be missed, so each run of the
coordination loop searches GitHub and records what changed: approvals, withdrawals, holds and
priorities. A sync is safe to repeat and to race (each event has an idempotency key), and it
withdraws nothing on the word of a search index that lags behind GitHub.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.context import AppContext
from bot.integrations.github import (
    GitHubClient,
    GitHubError,
    GitHubIssue,
    GitHubNotFound,
    GitHubUnavailable,
    SearchReport,
)
from bot.services.work.repo_config import RepoConfigService
from store import catalogue
from store.catalogue import priority_from_labels
from store.errors import EventValidationError
from store.events import NewEvent
from store.projections import Issue

log = logging.getLogger(__name__)

METADATA = {"actor": "conductor-e", "source": "github-sync"}
# States in which a priority still matters: the issue is waiting or being worked.
ACTIVE_STATES = frozenset({"queued", "assigned", "in_progress", "in_review", "deploying"})
# At most this many withdrawal candidates are confirmed (one GET each) per run; the rest wait
# for the next run, so a mass unlabelling cannot burn the rate limit in one go.
MAX_CONFIRMATIONS = 50
APPEND_CONCURRENCY = 64
PROJECTION_PAGE = 5_000


def approval_payload(issue: GitHubIssue, mapping: Mapping[str, str]) -> dict[str, Any]:
    """The ISSUE_APPROVED payload for a GitHub issue, trimmed to the catalogue's limits."""
    return {
        "repo": issue.repo,
        "issueNumber": issue.number,
        "title": issue.title[:1_000],
        "url": issue.url[:1_000],
        "labels": [label[:100] for label in issue.labels[:100]],
        "priority": priority_from_labels(issue.labels, mapping),
    }


def approval_key(node_id: str, stream_id: str, epoch: int) -> str:
    """The idempotency key of an issue's approval number `epoch` (1 + its withdrawals): the
    sync and a person's /issue approve use the same, so racing they store one approval."""
    return f"approved:{node_id or stream_id}:{epoch}"


@dataclass
class SyncResult:
    """What one sync did; the lists hold the issue stream ids."""

    approved: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    reprioritised: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # the hold label appeared on GitHub
    unheld: list[str] = field(default_factory=list)  # ... or went
    # Repos seen for the first time whose .rig-agent.yaml was recorded (or found broken).
    configs_changed: list[str] = field(default_factory=list)
    configs_invalid: list[str] = field(default_factory=list)
    found: int = 0  # agent-ready issues GitHub returned
    requests: int = 0  # HTTP requests sent to GitHub, retries included
    not_modified: int = 0  # of which answered 304 (free against the rate limit)
    incomplete: bool = False
    reasons: list[str] = field(default_factory=list)  # why the search was incomplete
    unavailable: str | None = None  # GitHub was down for (part of) the search: the error class
    unauthorized: bool = False  # GitHub rejected GITHUB_TOKEN
    errors: list[str] = field(default_factory=list)
    rate_limit_remaining: int | None = None

    @property
    def changed(self) -> bool:
        return bool(
            self.approved or self.withdrawn or self.reprioritised or self.held or self.unheld
        )


@dataclass(frozen=True)
class _Append:
    stream_id: str
    event: NewEvent
    key: str
    bucket: str  # which SyncResult list it counts towards


class SyncService:
    """Compares GitHub's agent-ready issues with the issues projection and records the changes."""

    def __init__(
        self,
        context: AppContext,
        github: GitHubClient,
        *,
        configs: RepoConfigService | None = None,
    ) -> None:
        self.context = context
        self.github = github
        # Reads the .rig-agent.yaml of a repo seen for the first time before its issues are
        # queued, so that the first claim already follows the repo's routing.
        self.configs = configs

    async def run(self) -> SyncResult:
        """One sync. Safe to repeat: an unchanged GitHub appends nothing."""
        settings = self.context.settings
        requests_before = self.github.requests_made
        result = SyncResult()
        report = await self.github.find_agent_ready()
        result.found = len(report.issues)
        result.incomplete = report.incomplete
        result.reasons = list(report.reasons)
        result.unavailable, result.unauthorized = report.unavailable, report.unauthorized
        result.not_modified = report.not_modified

        known = await self._known_issues()
        appends: list[_Append] = []
        found: set[str] = set()
        for issue in report.issues:
            stream = catalogue.issue_stream(issue.repo, issue.number)
            found.add(stream.lower())
            current = known.get(stream.lower())
            if current is None or current.state == "withdrawn":
                append = await self._approval(issue, stream, current, result)
                if append is not None:
                    appends.append(append)
            elif current.state in ACTIVE_STATES:
                for append in (
                    self._priority_change(issue, current, result),
                    self._hold_change(issue, current, result),
                ):
                    if append is not None:
                        appends.append(append)

        # Withdraw only from a repo searched completely, and only what was approved for the
        # label (its recorded labels include it); each candidate is then confirmed by a GET.
        candidates = [
            current
            for key, current in known.items()
            if current.state == "queued"
            and key not in found
            and report.complete_for(current.repo)
            and any(label.lower() == settings.agent_ready_label.lower() for label in current.labels)
        ]
        appends.extend(await self._withdrawals(candidates, report, result))

        if self.configs is not None:
            new_repos = {a.event.data["repo"] for a in appends if a.bucket == "approved"}
            # A repo that cannot be read now takes the default route until the loop's next
            # read of every repo (which reports the failure).
            read = await self.configs.ensure(new_repos)
            result.configs_changed, result.configs_invalid = read.changed, read.invalid
        await self._append_all(appends, result)
        result.requests = self.github.requests_made - requests_before
        result.rate_limit_remaining = report.rate_limit_remaining
        # While GitHub is down the loop said so once ("github: down"); each retry is DEBUG.
        log.log(
            logging.DEBUG if result.unavailable else logging.INFO,
            "github sync: %d found, %d approved, %d withdrawn, %d reprioritised, "
            "%d requests (%d not modified)%s",
            result.found,
            len(result.approved),
            len(result.withdrawn),
            len(result.reprioritised),
            result.requests,
            result.not_modified,
            "; incomplete: " + "; ".join(result.reasons) if result.incomplete else "",
        )
        return result

    async def _known_issues(self) -> dict[str, Issue]:
        """Every issue in the projection, keyed by lower-cased stream id."""
        known: dict[str, Issue] = {}
        offset = 0
        while True:
            page = await self.context.projections.issues(limit=PROJECTION_PAGE, offset=offset)
            for issue in page:
                known[issue.stream_id.lower()] = issue
            if len(page) < PROJECTION_PAGE:
                return known
            offset += PROJECTION_PAGE

    async def _withdrawal_count(self, stream_id: str) -> int:
        events = await self.context.store.read_stream(stream_id)
        return sum(1 for event in events if event.type == "ISSUE_WITHDRAWN")

    def _event(
        self, event_type: str, payload: dict[str, Any], result: SyncResult
    ) -> NewEvent | None:
        try:
            data = catalogue.validate(event_type, payload, internal=True)
        except EventValidationError as exc:
            result.errors.append(f"{payload.get('repo')}#{payload.get('issueNumber')}: {exc}")
            return None
        return NewEvent(event_type, data, dict(METADATA))

    async def _approval(
        self, issue: GitHubIssue, stream: str, current: Issue | None, result: SyncResult
    ) -> _Append | None:
        settings = self.context.settings
        if current is not None:
            # Keep the stream the projection knows, whatever case GitHub spells the repo in.
            stream = current.stream_id
        epoch = 1 if current is None else 1 + await self._withdrawal_count(stream)
        payload = approval_payload(issue, settings.priority_labels)
        if current is not None:
            payload["repo"], payload["issueNumber"] = current.repo, current.number
        event = self._event("ISSUE_APPROVED", payload, result)
        if event is None:
            return None
        return _Append(stream, event, approval_key(issue.node_id, stream, epoch), "approved")

    def _priority_change(
        self, issue: GitHubIssue, current: Issue, result: SyncResult
    ) -> _Append | None:
        """PRIORITY_CHANGED when the issue's labels now map to another priority. Only a change
        of labels on GitHub moves a priority: one an agent or a person set is left alone while
        the labels stay as they were."""
        mapping = self.context.settings.priority_labels
        wanted = priority_from_labels(issue.labels, mapping)
        if wanted == current.priority or wanted == priority_from_labels(current.labels, mapping):
            return None
        payload = {
            "repo": current.repo,
            "issueNumber": current.number,
            "priority": wanted,
            "labels": [label[:100] for label in issue.labels[:100]],
        }
        event = self._event("PRIORITY_CHANGED", payload, result)
        if event is None:
            return None
        key = f"priority:{current.stream_id}:{current.position}:{wanted}"
        return _Append(current.stream_id, event, key, "reprioritised")

    def _hold_change(
        self, issue: GitHubIssue, current: Issue, result: SyncResult
    ) -> _Append | None:
        """The hold label added or removed on GitHub: ISSUE_HELD / ISSUE_UNHELD. A hold a person
        made through Conductor-E put the label there first, so the sync agrees with it."""
        label = self.context.settings.hold_label
        labelled = issue.has_label(label)
        if labelled == current.held:
            return None
        payload: dict[str, Any] = {
            "repo": current.repo,
            "issueNumber": current.number,
            "labels": [name[:100] for name in issue.labels[:100]],
        }
        if labelled:
            payload["reason"] = f"the {label!r} label was added on GitHub"
        event_type = "ISSUE_HELD" if labelled else "ISSUE_UNHELD"
        event = self._event(event_type, payload, result)
        if event is None:
            return None
        key = f"hold:{current.stream_id}:{current.position}:{labelled}"
        return _Append(current.stream_id, event, key, "held" if labelled else "unheld")

    async def _withdrawals(
        self, candidates: Sequence[Issue], report: SearchReport, result: SyncResult
    ) -> list[_Append]:
        """ISSUE_WITHDRAWN for each candidate that GitHub itself says is closed, unlabelled or
        gone: the search index lags behind GitHub, a single GET does not."""
        label = self.context.settings.agent_ready_label
        appends: list[_Append] = []
        if len(candidates) > MAX_CONFIRMATIONS:
            log.info(
                "github sync: %d issues left the search; confirming %d this run",
                len(candidates),
                MAX_CONFIRMATIONS,
            )
        for current in candidates[:MAX_CONFIRMATIONS]:
            try:
                now = await self.github.get_issue(current.repo, current.number)
            except (GitHubError, GitHubUnavailable, GitHubNotFound) as exc:
                result.errors.append(f"{current.stream_id}: could not confirm: {exc.message}")
                continue
            reason = withdrawal_reason(current, now, label)
            if reason is None:
                continue  # still open and labelled: the search index has not caught up
            payload = {"repo": current.repo, "issueNumber": current.number, "reason": reason}
            event = self._event("ISSUE_WITHDRAWN", payload, result)
            if event is None:
                continue
            epoch = 1 + await self._withdrawal_count(current.stream_id)
            key = f"withdrawn:{current.stream_id}:{epoch}"
            appends.append(_Append(current.stream_id, event, key, "withdrawn"))
        return appends

    async def _append_all(self, appends: Sequence[_Append], result: SyncResult) -> None:
        # Concurrent appends: the store commits them together in batches.
        limit = asyncio.Semaphore(APPEND_CONCURRENCY)

        async def one(append: _Append) -> None:
            async with limit:
                stored = await self.context.store.append(
                    append.stream_id, [append.event], idempotency_key=append.key
                )
            if not stored.duplicate:
                getattr(result, append.bucket).append(append.stream_id)

        await asyncio.gather(*(one(append) for append in appends))


def withdrawal_reason(current: Issue, now: GitHubIssue | None, label: str) -> str | None:
    """Why a queued issue is no longer agent-ready, from GitHub's answer; None if it still is."""
    if now is None:
        return "the issue no longer exists on GitHub (deleted, or moved out of reach)"
    if now.repo.lower() != current.repo.lower():
        return f"the issue was transferred to {now.repo}"
    if now.state == "closed":
        return f"closed on GitHub ({now.state_reason or 'completed'}) before it was worked"
    if not now.has_label(label):
        return f"the {label!r} label was removed on GitHub"
    return None
