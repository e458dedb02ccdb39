"""GitHub webhook deliveries as a test sends them to Conductor-E: `sign()` signs exactly like
GitHub (`sha256=` + hex HMAC-SHA256 of the raw body), `delivery_headers()` builds the headers of
a delivery, `encode()` the raw body, and the `*_payload` builders give documented payload
shapes (issues, pull_request, pull_request_review, check_suite, check_run, push, ping)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable
from typing import Any

from tests.fakes.github.objects import (
    API,
    issue_object,
    label_object,
    pull_request_object,
    repository_object,
    sender,
)


def sign(secret: bytes, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends: `sha256=` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def encode(payload: dict[str, Any]) -> bytes:
    """A payload's raw body as GitHub sends it (JSON, application/json)."""
    return json.dumps(payload, separators=(",", ":")).encode()


def delivery_headers(
    event: str, body: bytes, secret: bytes | None, delivery_id: str | None = None
) -> dict[str, str]:
    """The headers of a webhook delivery, signed with `secret` when given."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/6c1b7e8",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "4242",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return headers


def issues_payload(
    action: str,
    repo: str,
    number: int,
    *,
    labels: Iterable[str] = (),
    label: str | None = None,
    state: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """`issues` event: opened, labeled, unlabeled, closed, reopened, …"""
    if state is None:
        state = "closed" if action == "closed" else "open"
    payload: dict[str, Any] = {
        "action": action,
        "issue": issue_object(repo, number, labels=labels, state=state, title=title),
        "repository": repository_object(repo, API),
        "sender": sender(),
    }
    if label is not None:
        payload["label"] = label_object(label)
    return payload


def pull_request_payload(
    action: str, repo: str, number: int, *, body: str | None = None, merged: bool = False
) -> dict[str, Any]:
    """`pull_request` event: opened, closed (with merged true/false), …"""
    state = "closed" if action == "closed" else "open"
    return {
        "action": action,
        "number": number,
        "pull_request": pull_request_object(repo, number, body=body, merged=merged, state=state),
        "repository": repository_object(repo, API),
        "sender": sender(),
    }


def pull_request_review_payload(
    repo: str, pr_number: int, state: str, *, body: str | None = None, action: str = "submitted"
) -> dict[str, Any]:
    """`pull_request_review` event; `state` is approved, changes_requested or commented."""
    return {
        "action": action,
        "review": {
            "id": 9000 + pr_number,
            "node_id": f"PRR_kw{pr_number}",
            "user": {"login": "review-e[bot]", "id": 3, "type": "Bot"},
            "body": None,
            "state": state,
            "html_url": f"https://github.com/{repo}/pull/{pr_number}#pullrequestreview-1",
            "submitted_at": "2025-01-02T00:00:00Z",
        },
        "pull_request": pull_request_object(repo, pr_number, body=body),
        "repository": repository_object(repo, API),
        "sender": sender(),
    }


def _pr_refs(repo: str, pr_numbers: Iterable[int]) -> list[dict[str, Any]]:
    return [
        {
            "id": 5000 + number,
            "number": number,
            "url": f"{API}/repos/{repo}/pulls/{number}",
            "head": {"ref": f"issue-{number}", "sha": "a" * 40, "repo": {"name": repo}},
            "base": {"ref": "main", "sha": "b" * 40, "repo": {"name": repo}},
        }
        for number in pr_numbers
    ]


def check_suite_payload(
    repo: str, conclusion: str, pr_numbers: Iterable[int], *, action: str = "completed"
) -> dict[str, Any]:
    """`check_suite` event; `conclusion` success, failure, timed_out, cancelled, neutral, …"""
    return {
        "action": action,
        "check_suite": {
            "id": 7000,
            "head_branch": "issue",
            "head_sha": "a" * 40,
            "status": "completed" if action == "completed" else "queued",
            "conclusion": conclusion if action == "completed" else None,
            "pull_requests": _pr_refs(repo, pr_numbers),
            "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
        },
        "repository": repository_object(repo, API),
        "sender": sender(),
    }


def check_run_payload(
    repo: str, conclusion: str, pr_numbers: Iterable[int], *, action: str = "completed"
) -> dict[str, Any]:
    """`check_run` event for one run of a suite."""
    return {
        "action": action,
        "check_run": {
            "id": 8000,
            "name": "tests",
            "head_sha": "a" * 40,
            "status": "completed" if action == "completed" else "in_progress",
            "conclusion": conclusion if action == "completed" else None,
            "html_url": f"https://github.com/{repo}/runs/8000",
            "pull_requests": _pr_refs(repo, pr_numbers),
            "check_suite": {"id": 7000},
            "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
        },
        "repository": repository_object(repo, API),
        "sender": sender(),
    }


def push_payload(
    repo: str,
    *,
    ref: str = "refs/heads/main",
    added: Iterable[str] = (),
    modified: Iterable[str] = (),
    removed: Iterable[str] = (),
    commits: int = 1,
    default_branch: str = "main",
) -> dict[str, Any]:
    """`push` event: `commits` commits, the first touching the given paths."""
    listed = [
        {
            "id": f"{n:040x}",
            "tree_id": f"{n + 1:040x}",
            "message": f"commit {n}",
            "timestamp": "2025-01-02T00:00:00Z",
            "author": {"name": "octocat", "email": "octocat@example.com"},
            "added": list(added) if n == 0 else [],
            "modified": list(modified) if n == 0 else [],
            "removed": list(removed) if n == 0 else [],
        }
        for n in range(commits)
    ]
    repository = {**repository_object(repo, API), "default_branch": default_branch}
    return {
        "ref": ref,
        "before": "0" * 40,
        "after": listed[-1]["id"] if listed else "0" * 40,
        "created": False,
        "deleted": False,
        "forced": False,
        "commits": listed,
        "head_commit": listed[-1] if listed else None,
        "repository": repository,
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": sender(),
    }


def ping_payload(hook_id: int = 4242) -> dict[str, Any]:
    return {
        "zen": "Keep it logically awesome.",
        "hook_id": hook_id,
        "hook": {"type": "Repository", "id": hook_id, "events": ["issues", "pull_request"]},
        "sender": sender(),
    }
