"""Pull requests, for the merge gate: `GET /repos/{o}/{r}/pulls/{n}` (head sha, draft,
mergeable, mergeable_state, labels) and `PUT /repos/{o}/{r}/pulls/{n}/merge`: 409 when `sha` is
not the head, 405 when closed, a draft or conflicting, 422 for an unknown merge_method. Every
merge call's body is kept in `merge_calls`; `merge_refusals` makes the next merges answer a
given status (branch protection), and `on_merge` runs as each merge request arrives.

A test makes a pull request with `add_pull` (it is an issue too, as on GitHub) and moves it on
with `push_commit`, `set_draft`, `set_mergeable`, `set_pull_labels`, `merge_by_person`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from tests.fakes.github.issues import Issues
from tests.fakes.github.objects import iso, pull_request_object, repository_object
from tests.fakes.github.server import DOCS, repo_of


class Pulls(Issues):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pulls: dict[tuple[str, int], dict[str, Any]] = {}
        self.merge_calls: list[dict[str, Any]] = []  # every PUT .../merge body, in order
        self.merge_refusals: list[tuple[int, str]] = []  # the next merges answer these
        # Runs with the PR as each merge request arrives (e.g. to merge it before a refusal).
        self.on_merge: Callable[[dict[str, Any]], None] | None = None

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        pulls = "/repos/{owner}/{repo}/pulls/{number:\\d+}"
        app.router.add_get(pulls, self._get_pull)
        app.router.add_put(pulls + "/merge", self._merge)

    # --- the data -----------------------------------------------------------------------------

    def add_pull(
        self,
        repo: str,
        number: int,
        *,
        body: str | None = None,
        head_sha: str | None = None,
        head_ref: str | None = None,
        draft: bool = False,
        mergeable: bool | None = True,
        labels: Iterable[str] = (),
    ) -> dict[str, Any]:
        """A pull request as `GET /repos/{o}/{r}/pulls/{n}` returns it (also an issue)."""
        self.add_issue(repo, number, pull_request=True, body=body, labels=labels)
        sha = head_sha or hashlib.sha1(f"{repo}#{number}:0".encode()).hexdigest()
        pull: dict[str, Any] = {
            **pull_request_object(repo, number, body=body),
            "url": f"{self.url}/repos/{repo}/pulls/{number}",
            "draft": draft,
            "merged_by": None,
            "merge_commit_sha": None,
            "head": {"ref": head_ref or f"issue-{number}", "sha": sha},
            "base": {"ref": "main", "sha": "b" * 40, "repo": repository_object(repo, self.url)},
        }
        self.pulls[(repo.lower(), number)] = pull
        self.set_mergeable(repo, number, mergeable)
        self._set_labels(pull, labels)
        return pull

    def pull(self, repo: str, number: int) -> dict[str, Any]:
        return self.pulls[(repo.lower(), number)]

    def head(self, repo: str, number: int) -> str:
        return str(self.pull(repo, number)["head"]["sha"])

    def set_mergeable(self, repo: str, number: int, mergeable: bool | None) -> None:
        pull = self.pull(repo, number)
        pull["mergeable"] = mergeable
        state = {True: "clean", False: "dirty", None: "unknown"}[mergeable]
        pull["mergeable_state"] = "draft" if pull["draft"] else state

    def set_draft(self, repo: str, number: int, draft: bool) -> None:
        self.pull(repo, number)["draft"] = draft
        self.set_mergeable(repo, number, self.pull(repo, number)["mergeable"])

    def set_pull_labels(self, repo: str, number: int, labels: Iterable[str]) -> None:
        self._set_labels(self.pull(repo, number), labels)
        self.set_labels(repo, number, labels)

    def push_commit(self, repo: str, number: int) -> str:
        """A new head commit on the PR's branch; returns its sha."""
        pull = self.pull(repo, number)
        sha = hashlib.sha1(f"{pull['head']['sha']}+1".encode()).hexdigest()
        pull["head"]["sha"] = sha
        return sha

    def merge_by_person(self, repo: str, number: int) -> None:
        self._mark_merged(self.pull(repo, number), "octocat")

    def _mark_merged(self, pull: dict[str, Any], by: str) -> str:
        sha = hashlib.sha1(f"merge:{pull['head']['sha']}".encode()).hexdigest()
        pull.update(
            state="closed",
            merged=True,
            merged_at=iso(self._tick()),
            merged_by={"login": by, "id": 4, "type": "User"},
            merge_commit_sha=sha,
            mergeable=None,
            mergeable_state="unknown",
        )
        return sha

    # --- HTTP ---------------------------------------------------------------------------------

    def _pull_of(self, request: web.Request) -> dict[str, Any] | None:
        return self.pulls.get((repo_of(request), int(request.match_info["number"])))

    async def _get_pull(self, request: web.Request) -> web.Response:
        pull = self._pull_of(request)
        return self._not_found() if pull is None else self._json(pull)

    async def _merge(self, request: web.Request) -> web.Response:
        """PUT .../merge: 200 merged; 409 when `sha` is not the head; 405 when not mergeable
        (conflict, draft, closed); 422 for a bad merge_method."""
        pull = self._pull_of(request)
        if pull is None:
            return self._not_found()
        try:
            body = await request.json()
        except ValueError:
            return self._json({"message": "Problems parsing JSON", "documentation_url": DOCS}, 400)
        self.merge_calls.append({"number": pull["number"], **body})
        if self.on_merge is not None:
            self.on_merge(pull)
        if self.merge_refusals:
            status, message = self.merge_refusals.pop(0)
            return self._json({"message": message, "documentation_url": DOCS}, status)
        if body.get("merge_method", "merge") not in ("merge", "squash", "rebase"):
            return self._validation("merge_method", "invalid")
        if "sha" in body and body["sha"] != pull["head"]["sha"]:
            return self._json(
                {
                    "message": "Head branch was modified. Review and try the merge again.",
                    "documentation_url": DOCS,
                },
                409,
            )
        if pull["state"] != "open" or pull["draft"] or pull["mergeable"] is False:
            return self._json(
                {"message": "Pull Request is not mergeable", "documentation_url": DOCS}, 405
            )
        sha = self._mark_merged(pull, "conductor-e[bot]")
        return self._json(
            {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}
        )
