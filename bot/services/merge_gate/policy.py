"""The merge gate's policy, pure: what a decision is made of and how each condition is judged.

Kept apart from the deciding and merging (gate.py), so that each condition is judged without
I/O and returns its reason. The facts are GitHub's state read at decision time, never
remembered webhooks (python/miss-islington's rule); the conditions themselves are listed in
the README's "The merge gate".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.errors import InvalidInput
from bot.integrations.github import (
    CommitChecks,
    PullReview,
)
from store.events import RecordedEvent
from store.projections import Issue

log = logging.getLogger(__name__)


SOURCE = "merge-gate"
GREEN = frozenset({"success", "neutral", "skipped"})
WORKING_STATES = frozenset({"assigned", "in_progress", "in_review"})
# The branch names agents use for an issue: `issue-42`, `dev-e/issue-42-fix`, `fix/42-title`.
_BRANCH = re.compile(
    r"(?:^|[/_-])issues?[-_/]?([1-9][0-9]{0,9})(?:\D|$)|^(?:[\w.-]+/)?([1-9][0-9]{0,9})[-_]"
)


# The webhook deliveries that ask the gate to decide (event name -> actions; None: any).
ASKED_BY: dict[str, frozenset[str] | None] = {
    "pull_request": frozenset(
        {
            "opened",
            "reopened",
            "synchronize",
            "ready_for_review",
            "labeled",
            "unlabeled",
            "closed",
            "edited",
        }
    ),
    "pull_request_review": frozenset({"submitted", "dismissed", "edited"}),
    "check_suite": frozenset({"completed"}),
    "check_run": frozenset({"completed"}),
    "status": None,
}


def gate_asked_by(event_name: str, action: str | None) -> bool:
    """Whether a delivery asks the gate to decide."""
    if event_name not in ASKED_BY:
        return False
    actions = ASKED_BY[event_name]
    return actions is None or action in actions


@dataclass(frozen=True)
class Condition:
    name: str
    ok: bool
    why: str


@dataclass(frozen=True)
class Decision:
    """What the gate decided for one PR, and every condition with why."""

    repo: str
    number: int
    action: str  # merged | recorded | dry-run | waiting | blocked | closed | unlinked | ...
    reason: str
    head_sha: str = ""
    issue_stream: str | None = None
    conditions: tuple[Condition, ...] = ()
    requests: int = 0  # GitHub requests this decision made

    @property
    def green(self) -> bool:
        return bool(self.conditions) and all(c.ok for c in self.conditions)

    def render(self) -> str:
        lines = [f"PR {self.repo}#{self.number}: {self.action} - {self.reason}"]
        lines += [f"{'✔' if c.ok else '✘'} {c.name}: {c.why}" for c in self.conditions]
        return "\n".join(lines)


_REPO = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")


def check_pr(repo: str, number: int) -> None:
    """InvalidInput unless `repo` is owner/repo and `number` a PR number."""
    if not _REPO.match(repo or ""):
        raise InvalidInput(f"{repo[:60]!r} is not a repository (owner/repo)")
    if not 1 <= number <= 2_147_483_647:
        raise InvalidInput("the pull request number must be positive")


def gate_state(issue: Issue, listed: bool, events: Iterable[RecordedEvent] = ()) -> str | None:
    """The gate's word on an issue's PR from what is recorded (no GitHub call): for the
    dashboard card and `/issue show`. None when the issue has no PR being worked."""
    if issue.pr_number is None or issue.state not in WORKING_STATES:
        return None
    blocked = None
    for event in events:
        if event.type == "MERGE_BLOCKED" and event.data.get("prNumber") == issue.pr_number:
            blocked = event
        elif event.type == "PR_CREATED":
            blocked = None
    if blocked is not None or issue.last_event_type == "MERGE_BLOCKED":
        detail = (
            f": GitHub {blocked.data.get('status')} on {str(blocked.data.get('headSha'))[:7]} "
            f"({blocked.data.get('reason')})"
            if blocked is not None
            else ""
        )
        return f"merge blocked{detail}"
    if not listed:
        return "merge gate off for this repo: people merge"
    return "merge gate on: merges when reviewed and green (/merge status)"


def branch_issue(branch: str) -> int | None:
    """The issue number an agent's branch name carries (`issue-42`, `fix/42-title`), if any."""
    match = _BRANCH.search(branch or "")
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def hold_note(issue: Issue) -> str:
    """Whether a person holds the issue (`/issue hold`, the hold label), who and why."""
    if not issue.held:
        return "not held"
    why = f": {issue.held_reason}" if issue.held_reason else ""
    return f"{issue.stream_id} is held by {issue.held_by or 'someone'}{why}"


def judge_checks(checks: CommitChecks, required: Iterable[str]) -> Condition:
    """Every check run completed green, every status success, the required names present."""
    pending: list[str] = []
    failed: list[str] = []
    for run in checks.runs:
        if run.state != "completed":
            pending.append(run.name)
        elif (run.conclusion or "") not in GREEN:
            failed.append(f"{run.name} ({run.conclusion or 'no conclusion'})")
    for status in checks.statuses:
        if status.state == "pending":
            pending.append(status.name)
        elif status.state != "success":
            failed.append(f"{status.name} ({status.state})")
    names = {c.name.lower() for c in (*checks.runs, *checks.statuses)}
    missing = [name for name in required if name.lower() not in names]
    if failed:
        return Condition("checks", False, "failed: " + ", ".join(failed))
    if pending or missing:
        waiting = pending + [f"{name} (not reported)" for name in missing]
        return Condition("checks", False, "pending: " + ", ".join(waiting))
    count = len(checks.runs) + len(checks.statuses)
    if not count:
        # Right after a push GitHub has not created the runs yet: none is not green.
        return Condition("checks", False, "pending: no check reported on this commit yet")
    return Condition("checks", True, f"{count} green")


def judge_review(
    head: str, reviews: Iterable[PullReview], verdicts: Iterable[RecordedEvent]
) -> Condition:
    """Passed on `head`: the latest Review-E verdict passed this head or a GitHub review
    approved this commit, and no reviewer's latest review asks for changes."""
    latest: dict[str, PullReview] = {}
    for review in reviews:
        if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            latest[review.user] = review
    blocking = [user for user, r in latest.items() if r.state == "CHANGES_REQUESTED"]
    if blocking:
        return Condition("review", False, "changes requested by " + ", ".join(sorted(blocking)))
    last = max(verdicts, key=lambda event: event.position, default=None)
    if last is not None and last.type == "REVIEW_DISPUTED":
        return Condition("review", False, "Review-E disputed it; waiting for a new verdict")
    short = head[:7]
    if last is not None and last.metadata.get("headSha") == head:
        return Condition("review", True, f"Review-E passed {short}")
    approvers = sorted(
        u for u, r in latest.items() if r.state == "APPROVED" and r.commit_id == head
    )
    if approvers:
        return Condition("review", True, f"approved on {short} by {', '.join(approvers)}")
    if last is not None or any(r.state == "APPROVED" for r in latest.values()):
        return Condition("review", False, f"reviewed an older head; {short} is not reviewed")
    return Condition("review", False, f"{short} is not reviewed yet")


def merged_key(stream_id: str, pr_number: int) -> str:
    """The idempotency key of MERGED for one PR of one issue, whoever records it."""
    return f"merged:{stream_id}:{pr_number}"
