"""Events about a PR that must land on the issue the PR closes.

The agent runtime's Review-E posts REVIEW_PASSED / REVIEW_DISPUTED with `issueNumber` set to the
PR number, then asks `POST /api/merge {repo, prNumber}`. Such an event goes to the stream of the
issue whose PR it is (known from PR_CREATED, the pull_request webhook or the PR body's
`Closes #N`). One we cannot link yet waits on the PR's stream `owner/repo!N` and is copied to the
issue's stream (metadata `linkedFrom`: its position) as soon as the PR becomes known - never
dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.context import AppContext
from bot.settings import Settings
from store import catalogue
from store.events import AppendResult, NewEvent

# GitHub's closing keywords, then `#N` or `owner/repo#N`.
_CLOSING = re.compile(
    r"\b(?:close|closes|closed|fix|fixes|fixed|resolve|resolves|resolved)\s*:?\s*"
    r"(?:([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+))?#([1-9][0-9]{0,9})\b",
    re.IGNORECASE,
)


def closing_references(body: str | None, repo: str) -> list[tuple[str, int]]:
    """(repo, number) of every issue a PR body closes, in order, without repeats."""
    found: list[tuple[str, int]] = []
    for match in _CLOSING.finditer(body or ""):
        ref = (match.group(1) or repo, int(match.group(2)))
        if ref not in found:
            found.append(ref)
    return found


def in_scope(repo: str, settings: Settings) -> bool:
    """A repo we manage; with neither repos nor org configured, any repo (the secret gates)."""
    if not settings.managed_repos and not settings.github_org:
        return True
    lowered = repo.lower()
    if lowered in {r.lower() for r in settings.managed_repos}:
        return True
    org = settings.github_org
    return org is not None and lowered.split("/")[0] == org.lower()


@dataclass(frozen=True)
class MergeRequest:
    """What `POST /api/merge` answers: where the request was recorded, and the gate's word."""

    stream_id: str
    position: int
    gate: str
    message: str


# Types routed by their prNumber rather than their issueNumber.
PR_SCOPED = frozenset({"REVIEW_PASSED", "REVIEW_DISPUTED", "MERGE_REQUESTED"})


class PullRequestService:
    """Routes PR-scoped events to their issue and links the ones that waited."""

    def __init__(self, context: AppContext) -> None:
        self.context = context

    async def stream_for(self, data: dict[str, Any]) -> str:
        """The stream a PR-scoped event belongs to: its PR's issue, else the PR's own stream.

        An event whose issueNumber names a known issue other than the PR number stays there;
        one without a prNumber is an ordinary issue event.
        """
        repo, pr_number = data["repo"], data.get("prNumber")
        issue_number = data.get("issueNumber")
        if pr_number is None:
            return catalogue.issue_stream(repo, data["issueNumber"])
        issue = await self.context.projections.issue_for_pr(repo, pr_number)
        if issue is not None:
            return issue.stream_id
        if issue_number and issue_number != pr_number:
            stream = catalogue.issue_stream(repo, issue_number)
            if await self.context.projections.issue(stream) is not None:
                return stream
        return catalogue.pr_stream(repo, pr_number)

    async def record(
        self,
        event_type: str,
        data: dict[str, Any],
        metadata: dict[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append a PR-scoped event where it belongs; link it at once if its PR became known
        meanwhile (the PR_CREATED that raced it has already looked for waiting events)."""
        stream_id = await self.stream_for(data)
        result = await self.context.store.append(
            stream_id, [NewEvent(event_type, data, metadata)], idempotency_key=idempotency_key
        )
        pr_number = data.get("prNumber")
        if pr_number is not None and stream_id == catalogue.pr_stream(data["repo"], pr_number):
            await self.link_pending(data["repo"], pr_number)
        return result

    async def link_pending(self, repo: str, pr_number: int) -> int:
        """Copy the events waiting for this PR to its issue's stream; returns how many.

        Idempotent: each copy carries the key `link:<position>`, so two callers (or a retry)
        copy an event once.
        """
        waiting = await self.context.projections.pending_pr_events(repo, pr_number)
        issue = await self.context.projections.issue_for_pr(repo, pr_number) if waiting else None
        if issue is None:
            return 0
        linked = 0
        for pending in waiting:
            result = await self.context.store.append(
                issue.stream_id,
                [
                    NewEvent(
                        pending.type,
                        pending.data,
                        {"source": "link", "linkedFrom": pending.position},
                    )
                ],
                idempotency_key=f"link:{pending.position}",
            )
            linked += 0 if result.duplicate else 1
        return linked
