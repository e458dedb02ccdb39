"""The GitHub objects that both the fake's API answers and the webhook payloads carry:
repositories, users, labels, pull requests, in GitHub's documented shapes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

API = "https://api.github.com"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def repository_object(full_name: str, api_url: str) -> dict[str, Any]:
    owner, name = full_name.split("/", 1)
    ident = int(hashlib.sha1(full_name.encode()).hexdigest()[:8], 16)
    return {
        "id": ident,
        "node_id": f"R_{ident:x}",
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": {"login": owner, "id": ident + 1, "type": "Organization"},
        "html_url": f"https://github.com/{full_name}",
        "url": f"{api_url}/repos/{full_name}",
    }


def sender() -> dict[str, Any]:
    return {"login": "octocat", "id": 1, "type": "User"}


def label_object(name: str) -> dict[str, Any]:
    """A label as webhook payloads carry it."""
    return {"id": 1, "node_id": f"LA_{name}", "name": name, "color": "ededed", "default": False}


def issue_object(
    repo: str,
    number: int,
    *,
    labels: Iterable[str] = (),
    state: str = "open",
    title: str | None = None,
    node_id: str | None = None,
) -> dict[str, Any]:
    """An issue as webhook payloads carry it."""
    return {
        "id": 1000 + number,
        "node_id": node_id or f"I_kw{repo.replace('/', '_')}_{number}",
        "number": number,
        "title": title or f"Issue {number}",
        "state": state,
        "state_reason": None if state == "open" else "completed",
        "labels": [label_object(name) for name in labels],
        "html_url": f"https://github.com/{repo}/issues/{number}",
        "url": f"{API}/repos/{repo}/issues/{number}",
        "repository_url": f"{API}/repos/{repo}",
        "user": sender(),
        "body": None,
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-01T00:00:01Z",
    }


def pull_request_object(
    repo: str, number: int, *, body: str | None = None, merged: bool = False, state: str = "open"
) -> dict[str, Any]:
    """A pull request as webhook payloads carry it (and the start of the fake's own)."""
    return {
        "id": 5000 + number,
        "node_id": f"PR_kw{number}",
        "number": number,
        "title": f"Pull request {number}",
        "body": body,
        "state": state,
        "merged": merged,
        "merged_at": "2025-01-02T00:00:00Z" if merged else None,
        "html_url": f"https://github.com/{repo}/pull/{number}",
        "url": f"{API}/repos/{repo}/pulls/{number}",
        "user": {"login": "dev-e[bot]", "id": 2, "type": "Bot"},
        "head": {"ref": f"issue-{number}", "sha": "a" * 40},
        "base": {"ref": "main", "sha": "b" * 40},
        "labels": [],
    }
