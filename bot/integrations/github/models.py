"""Our own view of GitHub's objects, made from its JSON (a REST answer or a webhook payload)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class GitHubIssue:
    repo: str  # owner/name as GitHub spells it
    number: int
    title: str
    url: str  # the html_url
    labels: tuple[str, ...]
    state: str  # "open" | "closed"
    node_id: str
    updated_at: datetime | None
    is_pull_request: bool = False
    state_reason: str | None = None

    def has_label(self, label: str) -> bool:
        wanted = label.lower()
        return any(name.lower() == wanted for name in self.labels)


@dataclass(frozen=True)
class RepoFile:
    """A file's bytes on a repo's default branch, from the contents API."""

    repo: str
    path: str
    sha: str  # the blob sha: changes exactly when the content does
    content: bytes


@dataclass(frozen=True)
class RateLimitInfo:
    resource: str  # "core", "search", ...
    limit: int
    remaining: int
    used: int | None
    reset_at: datetime


@dataclass(frozen=True)
class PullRequest:
    """A pull request as the merge gate judges it."""

    repo: str
    number: int
    state: str  # "open" | "closed"
    merged: bool
    draft: bool
    mergeable: bool | None  # None: GitHub has not computed it yet
    mergeable_state: str
    head_sha: str
    head_ref: str
    body: str
    labels: tuple[str, ...]
    url: str
    merged_by: str = ""


@dataclass(frozen=True)
class PullReview:
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED, PENDING
    commit_id: str
    user: str


@dataclass(frozen=True)
class Check:
    """A check run (state = its status, with a conclusion once completed) or a commit status
    (state = error | failure | pending | success)."""

    name: str
    state: str
    conclusion: str | None = None


@dataclass(frozen=True)
class CommitChecks:
    sha: str
    runs: tuple[Check, ...]
    statuses: tuple[Check, ...]


@dataclass(frozen=True)
class MergeResult:
    merged: bool
    status: int  # 200, or GitHub's refusal (405, 409, 422, 403)
    message: str
    sha: str = ""


# --- from GitHub's shapes -------------------------------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def repo_of(item: Mapping[str, Any]) -> str:
    """owner/name of an issue item, from `repository_url` (search, issues API) or `repository`."""
    repository = item.get("repository")
    if isinstance(repository, Mapping) and repository.get("full_name"):
        return str(repository["full_name"])
    path = urlsplit(str(item.get("repository_url", ""))).path.rstrip("/")
    parts = path.split("/")
    if len(parts) < 2 or not parts[-1] or not parts[-2]:
        raise ValueError(f"issue item has no usable repository_url: {item.get('repository_url')!r}")
    return f"{parts[-2]}/{parts[-1]}"


def label_names(labels: Any) -> tuple[str, ...]:
    names: list[str] = []
    for label in labels or ():
        if isinstance(label, Mapping) and label.get("name"):
            names.append(str(label["name"]))
        elif isinstance(label, str):
            names.append(label)
    return tuple(names)


def issue_from_item(item: Mapping[str, Any], repo: str | None = None) -> GitHubIssue:
    """Our GitHubIssue from an issue object as the search, issues and webhook payloads give it."""
    return GitHubIssue(
        repo=repo or repo_of(item),
        number=int(item["number"]),
        title=str(item.get("title") or ""),
        url=str(item.get("html_url") or ""),
        labels=label_names(item.get("labels")),
        state=str(item.get("state") or "open"),
        node_id=str(item.get("node_id") or ""),
        updated_at=_parse_time(item.get("updated_at")),
        is_pull_request="pull_request" in item,
        state_reason=item.get("state_reason"),
    )


def pull_from_item(item: Mapping[str, Any], repo: str | None = None) -> PullRequest:
    """Our PullRequest from GitHub's pull request object (REST or a webhook payload)."""
    head = item.get("head") or {}
    base_repo = (item.get("base") or {}).get("repo") or {}
    mergeable = item.get("mergeable")
    return PullRequest(
        repo=repo or str(base_repo.get("full_name") or ""),
        number=int(item["number"]),
        state=str(item.get("state") or "open"),
        merged=bool(item.get("merged")),
        draft=bool(item.get("draft")),
        mergeable=mergeable if isinstance(mergeable, bool) else None,
        mergeable_state=str(item.get("mergeable_state") or ""),
        head_sha=str(head.get("sha") or ""),
        head_ref=str(head.get("ref") or ""),
        body=str(item.get("body") or ""),
        labels=label_names(item.get("labels")),
        url=str(item.get("html_url") or ""),
        merged_by=str((item.get("merged_by") or {}).get("login") or ""),
    )
