"""Issues and their labels: `GET /repos/{owner}/{repo}/issues` (labels, state, per_page, page)
and `GET .../issues/{number}`, pull requests included with their `pull_request` key, as GitHub
does; `POST .../issues/{number}/labels` and `DELETE .../issues/{number}/labels/{name}`.

A test creates issues with `add_issue` and changes them as a person on GitHub would
(`add_label`, `remove_label`, `set_labels`, `close`, `reopen`, `delete`); each change moves
`updated_at` on."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from tests.fakes.github.objects import iso
from tests.fakes.github.server import DOCS, Server, repo_of


class Issues(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issues: dict[tuple[str, int], dict[str, Any]] = {}
        self._numbers: dict[str, itertools.count[int]] = {}

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/repos/{owner}/{repo}/issues", self._list_issues)
        app.router.add_get("/repos/{owner}/{repo}/issues/{number:\\d+}", self._get_issue)
        labels = "/repos/{owner}/{repo}/issues/{number:\\d+}/labels"
        app.router.add_post(labels, self._add_labels)
        app.router.add_delete(labels + "/{name}", self._remove_label)

    # --- the data -----------------------------------------------------------------------------

    def add_issue(
        self,
        repo: str,
        number: int | None = None,
        *,
        title: str | None = None,
        labels: Iterable[str] = (),
        state: str = "open",
        pull_request: bool = False,
        body: str | None = None,
    ) -> dict[str, Any]:
        """Create an issue (or a pull request) and return its GitHub object."""
        counter = self._numbers.setdefault(repo.lower(), itertools.count(1))
        if number is None:
            number = next(counter)
            while (repo.lower(), number) in self.issues:
                number = next(counter)
        at = self._tick()
        ident = int(hashlib.sha1(f"{repo}#{number}".encode()).hexdigest()[:10], 16)
        kind = "pull" if pull_request else "issues"
        issue: dict[str, Any] = {
            "id": ident,
            "node_id": f"{'PR' if pull_request else 'I'}_kw{ident:x}",
            "number": number,
            "title": title or f"Issue {number} of {repo}",
            "body": body,
            "state": state,
            "state_reason": None if state == "open" else "completed",
            "locked": False,
            "labels": [],
            "user": {"login": "octocat", "id": 1, "type": "User"},
            "assignees": [],
            "comments": 0,
            "created_at": iso(at),
            "updated_at": iso(at),
            "closed_at": None if state == "open" else iso(at),
            "html_url": f"https://github.com/{repo}/{kind}/{number}",
            "url": f"{self.url}/repos/{repo}/issues/{number}",
            "repository_url": f"{self.url}/repos/{repo}",
        }
        self._set_labels(issue, labels)
        if pull_request:
            issue["pull_request"] = {
                "url": f"{self.url}/repos/{repo}/pulls/{number}",
                "html_url": f"https://github.com/{repo}/pull/{number}",
                "merged_at": None,
            }
        self.issues[(repo.lower(), number)] = issue
        return issue

    def issue(self, repo: str, number: int) -> dict[str, Any]:
        return self.issues[(repo.lower(), number)]

    def _set_labels(self, issue: dict[str, Any], labels: Iterable[str]) -> None:
        issue["labels"] = [
            {
                "id": int(hashlib.sha1(name.encode()).hexdigest()[:8], 16),
                "node_id": f"LA_{name}",
                "name": name,
                "color": "ededed",
                "default": False,
                "description": None,
            }
            for name in labels
        ]

    def _touch(self, issue: dict[str, Any]) -> None:
        issue["updated_at"] = iso(self._tick())

    def set_labels(self, repo: str, number: int, labels: Iterable[str]) -> dict[str, Any]:
        issue = self.issue(repo, number)
        self._set_labels(issue, labels)
        self._touch(issue)
        return issue

    def add_label(self, repo: str, number: int, label: str) -> dict[str, Any]:
        names = [entry["name"] for entry in self.issue(repo, number)["labels"]]
        return self.set_labels(repo, number, [*names, label])

    def remove_label(self, repo: str, number: int, label: str) -> dict[str, Any]:
        names = [entry["name"] for entry in self.issue(repo, number)["labels"]]
        return self.set_labels(repo, number, [n for n in names if n.lower() != label.lower()])

    def close(self, repo: str, number: int, reason: str = "completed") -> dict[str, Any]:
        issue = self.issue(repo, number)
        issue.update(state="closed", state_reason=reason, closed_at=iso(self._tick()))
        self._touch(issue)
        return issue

    def reopen(self, repo: str, number: int) -> dict[str, Any]:
        issue = self.issue(repo, number)
        issue.update(state="open", state_reason="reopened", closed_at=None)
        self._touch(issue)
        return issue

    def delete(self, repo: str, number: int) -> None:
        del self.issues[(repo.lower(), number)]

    # --- HTTP ---------------------------------------------------------------------------------

    def _issue_of(self, request: web.Request) -> dict[str, Any] | None:
        return self.issues.get((repo_of(request), int(request.match_info["number"])))

    async def _get_issue(self, request: web.Request) -> web.Response:
        issue = self._issue_of(request)
        if issue is None:
            return self._not_found()
        return self._json(issue)

    async def _list_issues(self, request: web.Request) -> web.Response:
        repo = repo_of(request)
        state = request.query.get("state", "open")
        wanted = [n.strip().lower() for n in request.query.get("labels", "").split(",") if n]
        found = [
            issue
            for (issue_repo, _), issue in sorted(self.issues.items())
            if issue_repo == repo
            and (state == "all" or issue["state"] == state)
            and all(w in {e["name"].lower() for e in issue["labels"]} for w in wanted)
        ]
        return self._listing(request, found)

    async def _add_labels(self, request: web.Request) -> web.Response:
        """POST /repos/{owner}/{repo}/issues/{number}/labels {"labels": [...]}: the issue's
        labels afterwards (200), as GitHub documents."""
        issue = self._issue_of(request)
        if issue is None:
            return self._not_found()
        body = await request.json()
        wanted = body.get("labels") if isinstance(body, dict) else None
        if not isinstance(wanted, list) or not all(isinstance(n, str) and n for n in wanted):
            return self._validation("labels", "invalid")
        names = [entry["name"] for entry in issue["labels"]]
        for name in wanted:
            if name.lower() not in (n.lower() for n in names):
                names.append(name)
        self._set_labels(issue, names)
        self._touch(issue)
        return self._json(issue["labels"])

    async def _remove_label(self, request: web.Request) -> web.Response:
        """DELETE .../labels/{name}: the remaining labels (200), or 404 "Label does not exist"
        when the issue does not carry it."""
        issue = self._issue_of(request)
        name = request.match_info["name"]
        names = [entry["name"] for entry in issue["labels"]] if issue is not None else []
        if issue is None or name.lower() not in (n.lower() for n in names):
            return self._json({"message": "Label does not exist", "documentation_url": DOCS}, 404)
        self._set_labels(issue, [n for n in names if n.lower() != name.lower()])
        self._touch(issue)
        return self._json(issue["labels"])
