"""The merge gate: a reviewed, green PR that closes an approved issue is merged, once.

Webhooks, review verdicts, `POST /api/merge`, `/merge now` and the coordination loop only ask
the gate to decide (`MergeGate.decide`), so every trigger meets the same policy (policy.py).
However many triggers arrive at once, and whether a person merged first or a crash came between
the merge and its record, a PR gives one MERGED; a head GitHub refused is not asked again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any, Protocol

from bot.context import AppContext
from bot.integrations.github import (
    CommitChecks,
    MergeResult,
    PullRequest,
    PullReview,
)
from bot.services.merge_gate.policy import (
    SOURCE,
    WORKING_STATES,
    Condition,
    Decision,
    branch_issue,
    hold_note,
    judge_checks,
    judge_review,
    merged_key,
)
from bot.services.work.pull_requests import PullRequestService, closing_references, in_scope
from store import catalogue
from store.events import AppendResult, NewEvent, RecordedEvent
from store.locks import hold_lock, named_lock_key
from store.projections import Issue

log = logging.getLogger(__name__)

# PRs (their lock names) with a trigger waiting for the lock: a newcomer folds into it.
_WAITING: set[str] = set()


class GateGitHub(Protocol):
    """What the gate needs of GitHub (bot.integrations.github.GitHubClient)."""

    requests_made: int

    async def get_pull(self, repo: str, number: int) -> PullRequest | None: ...

    async def list_reviews(self, repo: str, number: int) -> list[PullReview]: ...

    async def commit_checks(self, repo: str, sha: str) -> CommitChecks: ...

    async def merge_pull(self, repo: str, number: int, *, sha: str, method: str) -> MergeResult: ...


class MergeGate:
    """Decides, per PR, whether to merge; merges once; records why."""

    def __init__(
        self,
        context: AppContext,
        pull_requests: PullRequestService,
        github: GateGitHub | None = None,
    ) -> None:
        self.context = context
        self.pull_requests = pull_requests
        self.github = github if github is not None else context.github
        self.settings = context.settings
        # Decisions at once: each holds a pool connection for its PR's lock and needs another
        # for its reads, so they may take at most a third of the pool between them.
        self.slots = asyncio.Semaphore(max(1, context.settings.db_pool_size // 3))

    # --- opting in ---------------------------------------------------------------------------

    def listed(self, repo: str) -> bool:
        """CONDUCTOR_MERGE_REPOS lists the repo (`*`: every managed repo)."""
        wanted = [entry.lower() for entry in self.settings.merge_repos]
        return repo.lower() in wanted or ("*" in wanted and in_scope(repo, self.settings))

    async def _followed_prs(self) -> list[tuple[str, int]]:
        """(repo, PR) of every issue being worked that has a PR, in opted-in repos."""
        found: set[tuple[str, int]] = set()
        for state in sorted(WORKING_STATES):
            for issue in await self.context.projections.issues(state=state, limit=500):
                if issue.pr_number is not None and self.listed(issue.repo):
                    found.add((issue.repo, issue.pr_number))
        return sorted(found)

    async def open_prs(self, repo: str) -> list[int]:
        """The PRs of `repo` whose issues are being worked (a `status` webhook asks these)."""
        return [
            number for name, number in await self._followed_prs() if name.lower() == repo.lower()
        ]

    async def sweep(self) -> list[Decision]:
        """The coordination loop's fallback for a missed webhook: decide on every followed PR."""
        if self.github is None or not self.settings.merge_repos:
            return []
        decisions = []
        for repo, number in await self._followed_prs():
            decision = await self.ask(repo, number, trigger="loop")
            if decision is not None:
                decisions.append(decision)
        return decisions

    async def opted_in(self, repo: str) -> Condition:
        if not self.listed(repo):
            return Condition("repo opted in", False, f"{repo} is not in CONDUCTOR_MERGE_REPOS")
        config = await self.context.projections.repo_config(repo)
        if config is not None and config.present and (config.config or {}).get("merge") == "off":
            return Condition("repo opted in", False, ".rig-agent.yaml says merge: off")
        paused = await self.paused(repo)
        if paused:
            return Condition("repo opted in", False, paused)
        return Condition("repo opted in", True, "CONDUCTOR_MERGE_REPOS lists it")

    async def paused(self, repo: str) -> str | None:
        """Why the gate is paused for `repo` (all repos, or this one), or None."""
        events = await self.context.store.read_stream(catalogue.MERGE_GATE_STREAM)
        paused: dict[str, str] = {}  # "" (every repo) or a repo -> who paused it
        for event in events:
            if event.type not in ("MERGE_GATE_PAUSED", "MERGE_GATE_RESUMED"):
                continue  # nothing else may resume the gate
            key, actor = str(event.data.get("repo", "")).lower(), str(event.data.get("actor"))
            if event.type == "MERGE_GATE_PAUSED":
                paused[key] = actor
            elif key:
                paused.pop(key, None)
            else:
                paused.clear()  # resuming every repo resumes each one too
        if "" in paused:
            return f"paused for every repo by {paused['']}"
        if repo.lower() in paused:
            return f"paused for {repo} by {paused[repo.lower()]}"
        return None

    async def switch(self, repo: str | None, actor: str, *, pause: bool) -> AppendResult:
        """Record `/merge pause|resume [repo]` (no repo: every repo)."""
        kind = "MERGE_GATE_PAUSED" if pause else "MERGE_GATE_RESUMED"
        data = catalogue.validate(kind, {"repo": repo or "", "actor": actor}, internal=True)
        metadata = {"source": "discord", "actor": actor}
        return await self.context.store.append(
            catalogue.MERGE_GATE_STREAM, [NewEvent(kind, data, metadata)]
        )

    # --- linking -----------------------------------------------------------------------------

    async def link(self, pull: PullRequest) -> Issue | None:
        """The issue the PR closes: the one recorded for it, else its body's `Closes #N` or its
        branch name (recorded as PR_CREATED, so the link holds); None: left to people."""
        issue = await self.context.projections.issue_for_pr(pull.repo, pull.number)
        if issue is not None:
            return issue
        candidates = [
            (repo, number)
            for repo, number in closing_references(pull.body, pull.repo)
            if repo.lower() == pull.repo.lower()
        ]
        from_branch = branch_issue(pull.head_ref)
        if not candidates and from_branch is not None:
            candidates.append((pull.repo, from_branch))
        for repo, number in candidates:
            stream = catalogue.issue_stream(repo, number)
            issue = await self.context.projections.issue(stream)
            if issue is None or issue.state not in WORKING_STATES or issue.pr_number is not None:
                continue  # a PR naming an issue that has its PR already takes nothing over
            data = {"repo": repo, "issueNumber": number, "prNumber": pull.number, "url": pull.url}
            await self.context.store.append(
                stream,
                [NewEvent("PR_CREATED", data, {"source": SOURCE, "actor": "conductor-e"})],
                idempotency_key=f"pr-link:{stream}:{pull.number}",
            )
            await self.pull_requests.link_pending(repo, pull.number)
            return await self.context.projections.issue(stream)
        return None

    # --- deciding ----------------------------------------------------------------------------

    async def head_of(self, repo: str, number: int) -> str | None:
        """The PR's head sha now; None when GitHub cannot say (the verdict is kept anyway)."""
        if self.github is None:
            return None
        try:
            pull = await self.github.get_pull(repo, number)
        except Exception as exc:
            log.warning("merge gate: the head of %s#%d not read: %s", repo, number, exc)
            return None
        return pull.head_sha if pull is not None else None

    async def ask(self, repo: str, number: int, *, trigger: str) -> Decision | None:
        """`decide` for a trigger that must not fail because GitHub did (logged, None)."""
        try:
            return await self.decide(repo, number, trigger=trigger)
        except Exception as exc:
            log.warning("merge gate: %s#%d not decided (%s): %s", repo, number, trigger, exc)
            return None

    async def decide(
        self,
        repo: str,
        number: int,
        *,
        trigger: str = "api",
        force: bool = False,
        expected_sha: str | None = None,
        merge: bool = True,
    ) -> Decision:
        """Decide on one PR now; merge when every condition holds (and `merge`).

        `force` (an admin's `/merge now`) skips the review, opt-in and already-refused
        conditions but still needs `expected_sha` to be the head and the checks green.

        Decisions on one PR are serialised by an advisory lock, across processes; a merging
        trigger that arrives while another waits for the lock is folded into it, since the
        waiter reads GitHub after taking the lock and so sees what the newcomer would have.
        The merge names the judged head as `sha`, so GitHub refuses (409) if it moved meanwhile.
        """
        if self.github is None:
            return Decision(repo, number, "off", "GITHUB_TOKEN is not set: the gate cannot read")
        key = f"merge:{repo.lower()}#{number}"
        waiting = merge and not force  # a merging trigger folds into one already waiting
        if waiting:
            if key in _WAITING:
                return Decision(repo, number, "folded", "another trigger is about to decide")
            _WAITING.add(key)
        try:
            async with self.slots, hold_lock(self.context.pool, named_lock_key(key)):
                if waiting:
                    _WAITING.discard(key)  # from now on a newcomer waits behind us
                    waiting = False
                before = self.github.requests_made
                decision = await self._decide(repo, number, trigger, force, expected_sha, merge)
                decision = replace(decision, requests=self.github.requests_made - before)
        finally:
            if waiting:  # the lock was never taken
                _WAITING.discard(key)
        log.info("merge gate (%s): %s", trigger, decision.render().replace("\n", "; "))
        return decision

    async def _decide(
        self,
        repo: str,
        number: int,
        trigger: str,
        force: bool,
        expected_sha: str | None,
        merge: bool,
    ) -> Decision:
        assert self.github is not None
        pull = await self.github.get_pull(repo, number)
        if pull is None:
            return Decision(repo, number, "missing", "GitHub has no such pull request")
        issue = await self.link(pull)
        stream = issue.stream_id if issue is not None else None
        if pull.merged:
            if issue is None:
                return Decision(repo, number, "merged", "merged; it closes no issue we follow")
            await self._record_merged(issue, pull, pull.merged_by or "a person", trigger)
            return Decision(
                repo,
                number,
                "recorded",
                f"merged by {pull.merged_by or 'GitHub'}",
                pull.head_sha,
                stream,
            )
        if pull.state != "open":
            return Decision(repo, number, "closed", "closed without merging", pull.head_sha, stream)
        if issue is None:
            return Decision(
                repo,
                number,
                "unlinked",
                "it closes no issue Conductor-E approved: left to people",
                pull.head_sha,
            )
        conditions = await self._conditions(pull, issue, force)
        decision = Decision(repo, number, "waiting", "", pull.head_sha, stream, tuple(conditions))
        failing = [c for c in conditions if not c.ok]
        if failing:
            return replace(decision, reason="; ".join(f"{c.name}: {c.why}" for c in failing))
        if expected_sha is not None and expected_sha != pull.head_sha:
            return replace(
                decision,
                action="waiting",
                reason=f"the head moved from {expected_sha[:7]} to {pull.head_sha[:7]}",
            )
        if not merge:
            return replace(decision, action="ready", reason="every condition holds")
        if self.settings.merge_dry_run:
            return replace(
                decision, action="dry-run", reason="would merge (CONDUCTOR_MERGE_DRY_RUN)"
            )
        return await self._merge(pull, issue, decision, trigger)

    async def _conditions(self, pull: PullRequest, issue: Issue, force: bool) -> list[Condition]:
        assert self.github is not None
        reviews, checks, verdicts = await asyncio.gather(
            self.github.list_reviews(pull.repo, pull.number),
            self.github.commit_checks(pull.repo, pull.head_sha),
            self._verdicts(issue, pull),
        )
        blocking = {label.lower() for label in self.settings.merge_blocking_labels}
        labels = [label for label in pull.labels if label.lower() in blocking]
        mergeable = (
            Condition("mergeable", True, "no conflict")
            if pull.mergeable
            else Condition(
                "mergeable",
                False,
                "GitHub is still computing it" if pull.mergeable is None else "it has a conflict",
            )
        )
        conditions = [
            Condition("open", True, "open"),
            Condition("not a draft", not pull.draft, "draft" if pull.draft else "ready for review"),
            mergeable,
            Condition(
                "no blocking label",
                not labels,
                f"labelled {', '.join(labels)}"
                if labels
                else "none of " + ", ".join(sorted(blocking)),
            ),
            Condition("issue not held", not issue.held, hold_note(issue)),
            Condition(
                "closes an approved issue",
                issue.state in WORKING_STATES,
                f"{issue.stream_id} is {issue.state}",
            ),
            judge_checks(checks, self.settings.merge_required_checks),
        ]
        if force:
            conditions.append(Condition("review", True, "overridden by an admin"))
            return conditions
        conditions.append(judge_review(pull.head_sha, reviews, verdicts))
        conditions.append(await self.opted_in(pull.repo))
        refused = await self._refused(issue, pull)
        if refused is not None:
            conditions.append(Condition("not refused before", False, refused))
        return conditions

    async def _verdicts(self, issue: Issue, pull: PullRequest) -> list[RecordedEvent]:
        """Review-E's verdicts on this PR as first recorded (the PR's own stream keeps the
        original of a verdict that waited for its link; copies carry no head). A verdict from
        the agent the issue is assigned to is no review: an author does not pass its own PR."""
        author = (issue.assignee or "").split("/")[0]
        found: list[RecordedEvent] = []
        for stream in (issue.stream_id, catalogue.pr_stream(pull.repo, pull.number)):
            for event in await self.context.store.read_stream(stream):
                if (
                    event.type in ("REVIEW_PASSED", "REVIEW_DISPUTED")
                    and event.data.get("prNumber") == pull.number
                    and event.metadata.get("source") not in ("link", "github-webhook")
                    and str(event.data.get("agentId") or "").split("/")[0] != author
                ):
                    found.append(event)
        return found

    async def _refused(self, issue: Issue, pull: PullRequest) -> str | None:
        """GitHub's refusal already recorded for this head: not asked again (no storm)."""
        for event in reversed(await self.context.store.read_stream(issue.stream_id)):
            if (
                event.type == "MERGE_BLOCKED"
                and event.data.get("prNumber") == pull.number
                and event.data.get("headSha") == pull.head_sha
            ):
                return f"GitHub refused {pull.head_sha[:7]} ({event.data.get('status')}): " + str(
                    event.data.get("reason")
                )
        return None

    async def _merge(
        self, pull: PullRequest, issue: Issue, decision: Decision, trigger: str
    ) -> Decision:
        assert self.github is not None
        now_issue = await self.context.projections.issue(issue.stream_id)
        if now_issue is not None and now_issue.held:  # held while the gate read GitHub
            return replace(decision, action="waiting", reason=hold_note(now_issue))
        started = time.monotonic()
        result = await self.github.merge_pull(
            pull.repo, pull.number, sha=pull.head_sha, method=self.settings.merge_method
        )
        if result.merged:
            await self._record_merged(issue, pull, "conductor-e", trigger, merge_sha=result.sha)
            took = time.monotonic() - started
            return replace(
                decision,
                action="merged",
                reason=f"{self.settings.merge_method} merge of {pull.head_sha[:7]} ({took:.2f}s)",
            )
        now = await self.github.get_pull(pull.repo, pull.number)
        if now is not None and now.merged:
            # A retried merge whose first attempt went through answers "not mergeable".
            await self._record_merged(issue, now, now.merged_by or "conductor-e", trigger)
            return replace(decision, action="recorded", reason="GitHub says it is merged")
        data = {
            "repo": issue.repo,
            "issueNumber": issue.number,
            "prNumber": pull.number,
            "url": pull.url,
            "headSha": pull.head_sha,
            "status": result.status,
            "reason": result.message or f"GitHub answered {result.status}",
        }
        data = catalogue.validate("MERGE_BLOCKED", data, internal=True)
        await self.context.store.append(
            issue.stream_id,
            [NewEvent("MERGE_BLOCKED", data, {"source": SOURCE, "trigger": trigger})],
            idempotency_key=f"merge-blocked:{issue.stream_id}:{pull.number}:{pull.head_sha}:{result.status}",
        )
        why = {
            405: "not mergeable",
            409: "the head moved; waiting for its review and checks",
            422: "refused",
            403: "branch protection",
        }.get(result.status, "refused")
        return replace(
            decision, action="blocked", reason=f"GitHub {result.status} ({why}): {result.message}"
        )

    async def _record_merged(
        self,
        issue: Issue,
        pull: PullRequest,
        by: str,
        trigger: str,
        *,
        merge_sha: str = "",
    ) -> None:
        """MERGED on the issue, once however many times it is seen (the webhook uses the
        same key)."""
        data = {
            "repo": issue.repo,
            "issueNumber": issue.number,
            "prNumber": pull.number,
            "url": pull.url,
        }
        metadata: dict[str, Any] = {"source": SOURCE, "actor": by, "trigger": trigger}
        if merge_sha:
            metadata["mergeSha"] = merge_sha
        await self.context.store.append(
            issue.stream_id,
            [NewEvent("MERGED", data, metadata)],
            idempotency_key=merged_key(issue.stream_id, pull.number),
        )
