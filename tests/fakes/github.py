"""A fake GitHub REST API for gidgethub to talk to over HTTP on 127.0.0.1, and webhook helpers.

It serves, in GitHub's documented shapes:

* `GET /search/issues` — `q` with `repo:`, `org:`, `user:`, `label:` (quoted or not), `is:issue`,
  `is:pr`, `is:open`, `is:closed`, `state:`; `sort=created|updated`, `order`, `per_page`
  (max 100), `page`; `total_count`, `incomplete_results`, `items`. A query over 256 characters
  or with more than five AND/OR/NOT operators is a 422 "Validation Failed", as is a `repo:`
  that does not exist (`unsearchable`), and asking past the first 1,000 results;
* `GET /repos/{owner}/{repo}/issues/{number}` and `GET /repos/{owner}/{repo}/issues` (labels,
  state, per_page, page), pull requests included with their `pull_request` key, as GitHub does;
* `GET /repos/{owner}/{repo}/contents/{path}` — a file of the default branch: `type: file`,
  `encoding: base64` (wrapped at 60 characters, as GitHub sends it), `sha` (the git blob sha),
  `size`; 404 without an ETag when the file does not exist (GitHub sends none on a 404);
* pull requests for the merge gate (`add_pull`, `push_commit`, `add_review`, `set_check`,
  `set_status`, `green`, `merge_by_person`): `GET /repos/{o}/{r}/pulls/{n}` (head sha, draft,
  mergeable, mergeable_state, labels), `.../pulls/{n}/reviews` (commit_id per review),
  `GET .../commits/{sha}/check-runs` and `.../commits/{sha}/status` (GitHub's combined state),
  and `PUT .../pulls/{n}/merge`: 409 when `sha` is not the head, 405 when closed, a draft or
  conflicting, 422 for an unknown merge_method; every call's body is kept in `merge_calls`,
  and `merge_refusals` makes the next merges answer a given status (branch protection);
* `Link` pagination (rel next/last, and prev/first after page one) with absolute URLs;
* strong ETags over the body, and 304 Not Modified on a matching `If-None-Match` (a 304 does
  not count against the rate limit, as GitHub documents for authorised requests);
* `X-RateLimit-Limit/Remaining/Reset/Used/Resource` per resource (core: 5,000 an hour; search:
  30 a minute by default); a spent window answers 403 with GitHub's primary-limit message;
* `Authorization: token …` / `Bearer …` checked when a token is set (401 "Bad credentials").

Faults the test controls: `fail()` (any status, e.g. 500), `secondary_rate_limit()` (403 with
Retry-After and GitHub's message), `too_many_requests()` (429), `incomplete()` (next searches
say incomplete_results and drop their last item), `hang()` (requests wait until `release()`:
for client timeouts without sleeping). Every request is recorded in `requests`.

Webhook helpers: `sign()` signs exactly like GitHub (`sha256=` + hex HMAC-SHA256 of the raw
body), `delivery_headers()` builds the headers of a delivery, and the `*_payload` builders give
documented payload shapes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes import serve

MAX_QUERY_LENGTH = 256
MAX_OPERATORS = 5
SEARCH_CAP = 1000
DOCS = "https://docs.github.com/rest"
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {rid}."
)
PRIMARY_MESSAGE = (
    "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, "
    "please include the request ID {rid}."
)
_TOKEN = re.compile(r'(?:[^\s"]+:"[^"]*"|"[^"]*"|\S+)')


def iso(at: datetime) -> str:
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    status: int = 0


@dataclass
class Fault:
    status: int
    times: int
    path: str  # a prefix of the request path
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class RateWindow:
    limit: int
    seconds: int
    remaining: int = -1
    reset: int = 0
    used: int = 0

    def current(self, now: float) -> RateWindow:
        if self.remaining < 0 or now >= self.reset:
            self.remaining, self.used, self.reset = self.limit, 0, int(now) + self.seconds
        return self


def _repository(full_name: str, api_url: str) -> dict[str, Any]:
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


class FakeGitHub:
    """GitHub's REST API as far as Conductor-E uses it, on 127.0.0.1 at a random port."""

    def __init__(self, token: str | None = "ghp_fake_token", *, search_limit: int = 30) -> None:
        self.token = token
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.issues: dict[tuple[str, int], dict[str, Any]] = {}
        self.files: dict[tuple[str, str], bytes] = {}  # (repo lower-cased, path) → content
        self.unsearchable: set[str] = set()  # repos a search refuses (422), lower-cased
        # Issues the search index has not caught up with: searches miss them, GETs do not.
        self.search_lag: set[tuple[str, int]] = set()
        self.faults: list[Fault] = []
        self.windows = {"core": RateWindow(5000, 3600), "search": RateWindow(search_limit, 60)}
        self._incomplete = 0
        self._hanging = 0
        self._release = asyncio.Event()
        self._numbers: dict[str, itertools.count[int]] = {}
        self._clock = itertools.count(1)
        self._base_time = datetime(2025, 1, 1, tzinfo=UTC)
        self._runner: web.AppRunner | None = None
        # Pull requests (the merge gate): their state, reviews, and each commit's checks.
        self.pulls: dict[tuple[str, int], dict[str, Any]] = {}
        self.reviews: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.check_runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.merge_calls: list[dict[str, Any]] = []  # every PUT .../merge body, in order
        self.merge_refusals: list[tuple[int, str]] = []  # the next merges answer these
        # Runs with the PR as each merge request arrives (e.g. to merge it before a refusal).
        self.on_merge: Callable[[dict[str, Any]], None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_get("/rate_limit", self._search)  # answered by the middleware
        app.router.add_get("/search/issues", self._search)
        app.router.add_get("/repos/{owner}/{repo}/issues", self._list_issues)
        app.router.add_get("/repos/{owner}/{repo}/issues/{number:\\d+}", self._get_issue)
        app.router.add_get("/repos/{owner}/{repo}/contents/{path:.+}", self._get_contents)
        labels = "/repos/{owner}/{repo}/issues/{number:\\d+}/labels"
        app.router.add_post(labels, self._add_labels)
        app.router.add_delete(labels + "/{name}", self._remove_label)
        pulls = "/repos/{owner}/{repo}/pulls/{number:\\d+}"
        app.router.add_get(pulls, self._get_pull)
        app.router.add_get(pulls + "/reviews", self._list_reviews)
        app.router.add_put(pulls + "/merge", self._merge)
        app.router.add_get("/repos/{owner}/{repo}/commits/{sha}/check-runs", self._check_runs)
        app.router.add_get("/repos/{owner}/{repo}/commits/{sha}/status", self._combined_status)
        app.middlewares.append(self._middleware)
        self._runner, port = await serve(app, port)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGitHub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the data -----------------------------------------------------------------------------

    def _tick(self) -> datetime:
        """A strictly increasing time, so updated_at orders edits like GitHub's clock would."""
        return self._base_time + timedelta(seconds=next(self._clock))

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

    # --- pull requests ---------------------------------------------------------------------

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
            "base": {"ref": "main", "sha": "b" * 40, "repo": _repository(repo, self.url)},
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

    def add_review(
        self, repo: str, number: int, state: str = "APPROVED", *, commit_id: str | None = None
    ) -> None:
        reviews = self.reviews.setdefault((repo.lower(), number), [])
        reviews.append(
            {
                "id": 9000 + len(reviews),
                "user": {"login": "octocat", "id": 1, "type": "User"},
                "body": "",
                "state": state,
                "commit_id": commit_id or self.head(repo, number),
                "submitted_at": iso(self._tick()),
                "author_association": "MEMBER",
            }
        )

    def set_check(
        self, repo: str, sha: str, name: str, status: str, conclusion: str | None = None
    ) -> None:
        """A check run on a commit (status queued | in_progress | completed, and a conclusion
        once completed); the same name again replaces it, as a re-run shows on GitHub."""
        runs = self.check_runs.setdefault((repo.lower(), sha), [])
        runs[:] = [run for run in runs if run["name"] != name]
        runs.append(
            {
                "id": 8000 + len(runs),
                "head_sha": sha,
                "name": name,
                "status": status,
                "conclusion": conclusion if status == "completed" else None,
                "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
            }
        )

    def set_status(self, repo: str, sha: str, context: str, state: str) -> None:
        """A commit status (error | failure | pending | success); latest per context wins."""
        statuses = self.statuses.setdefault((repo.lower(), sha), [])
        statuses[:] = [item for item in statuses if item["context"] != context]
        statuses.append({"context": context, "state": state, "description": None})

    def green(self, repo: str, number: int) -> str:
        """Make the PR's head green (a completed successful run and a success status)."""
        sha = self.head(repo, number)
        self.set_check(repo, sha, "tests", "completed", "success")
        self.set_status(repo, sha, "ci/build", "success")
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

    def set_file(self, repo: str, path: str, content: str | bytes) -> str:
        """Create or replace a file on the default branch; returns its blob sha."""
        data = content.encode() if isinstance(content, str) else content
        self.files[(repo.lower(), path)] = data
        return blob_sha(data)

    def delete_file(self, repo: str, path: str) -> None:
        self.files.pop((repo.lower(), path), None)

    def contents_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if "/contents/" in r.path]

    def issue(self, repo: str, number: int) -> dict[str, Any]:
        return self.issues[(repo.lower(), number)]

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

    # --- faults -------------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        path: str = "/",
        headers: dict[str, str] | None = None,
        message: str | None = None,
    ) -> None:
        """The next `times` requests under `path` answer `status`."""
        body = {"message": message or _default_message(status), "documentation_url": DOCS}
        self.faults.append(Fault(status, times, path, dict(headers or {}), body))

    def secondary_rate_limit(
        self, *, retry_after: int | None = 60, times: int = 1, path: str = "/search/"
    ) -> None:
        """403 with GitHub's secondary-limit message (and Retry-After, unless None)."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self.faults.append(
            Fault(
                403,
                times,
                path,
                headers,
                {
                    "message": SECONDARY_MESSAGE.format(rid=_request_id()),
                    "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api"
                    "#about-secondary-rate-limits",
                },
            )
        )

    def too_many_requests(
        self, *, retry_after: int = 30, times: int = 1, path: str = "/search/"
    ) -> None:
        self.faults.append(
            Fault(
                429,
                times,
                path,
                {"Retry-After": str(retry_after)},
                {"message": SECONDARY_MESSAGE.format(rid=_request_id()), "documentation_url": DOCS},
            )
        )

    def spend_rate_limit(self, resource: str = "search", *, reset_in: int = 30) -> None:
        """Use up a resource's window; it resets `reset_in` seconds from now."""
        window = self.windows[resource].current(time.time())
        window.used += window.remaining
        window.remaining = 0
        window.reset = int(time.time()) + reset_in

    def incomplete(self, times: int = 1) -> None:
        """The next `times` searches report incomplete_results and miss their last item."""
        self._incomplete += times

    def hang(self, times: int = 1) -> None:
        """The next `times` requests wait until `release()` (or stop): a client timeout."""
        self._hanging += times
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    # --- assertions helpers -------------------------------------------------------------------

    def searches(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/search/issues"]

    def search_queries(self) -> list[str]:
        return [r.query.get("q", "") for r in self.searches()]

    # --- HTTP ---------------------------------------------------------------------------------

    def _rate_limit_body(self) -> dict[str, Any]:
        """GET /rate_limit in GitHub's shape: every window's limit, remaining, reset, used."""
        now = time.time()
        resources = {}
        for name, window in self.windows.items():
            current = window.current(now)
            resources[name] = {
                "limit": current.limit,
                "remaining": current.remaining,
                "reset": current.reset,
                "used": current.used,
            }
        return {"resources": resources, "rate": resources["core"]}

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        response = await self._answer(request, handler, headers)
        self.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query), headers, response.status
            )
        )
        return response

    async def _answer(
        self, request: web.Request, handler: Any, headers: dict[str, str]
    ) -> web.StreamResponse:
        if self._hanging > 0:
            self._hanging -= 1
            await self._release.wait()
        resource = "search" if request.path.startswith("/search/") else "core"
        window = self.windows[resource].current(time.time())
        for fault in self.faults:
            if fault.times > 0 and request.path.startswith(fault.path):
                fault.times -= 1
                response = self._json(fault.body, fault.status, resource)
                response.headers.update(fault.headers)
                return response
        if request.path == "/rate_limit":
            # Open without a token and not counted against any limit, as on GitHub.
            return self._json(self._rate_limit_body(), 200)
        if self.token is not None:
            auth = headers.get("authorization", "")
            if auth not in (f"token {self.token}", f"Bearer {self.token}"):
                return self._json(
                    {"message": "Bad credentials", "documentation_url": DOCS}, 401, resource
                )
        if window.remaining <= 0:
            return self._json(
                {"message": PRIMARY_MESSAGE.format(rid=_request_id()), "documentation_url": DOCS},
                403,
                resource,
            )
        response = await handler(request)
        if response.status == 200:
            etag = '"' + hashlib.sha256(response.body).hexdigest()[:40] + '"'
            response.headers["ETag"] = etag
            if etag in [tag.strip() for tag in headers.get("if-none-match", "").split(",")]:
                # Not counted against the rate limit, as GitHub documents for 304s.
                not_modified = web.Response(status=304)
                not_modified.headers["ETag"] = etag
                self._rate_headers(not_modified, resource)
                return not_modified
        window.remaining -= 1
        window.used += 1
        self._rate_headers(response, resource)
        return response

    def _rate_headers(self, response: web.StreamResponse, resource: str) -> None:
        window = self.windows[resource]
        response.headers.update(
            {
                "X-RateLimit-Limit": str(window.limit),
                "X-RateLimit-Remaining": str(max(window.remaining, 0)),
                "X-RateLimit-Reset": str(window.reset),
                "X-RateLimit-Used": str(window.used),
                "X-RateLimit-Resource": resource,
                "X-GitHub-Request-Id": _request_id(),
            }
        )

    def _json(self, body: Any, status: int = 200, resource: str | None = None) -> web.Response:
        response = web.Response(
            body=json.dumps(body).encode(),
            status=status,
            content_type="application/json",
            charset="utf-8",
        )
        if resource is not None:
            self._rate_headers(response, resource)
        return response

    def _page(
        self, request: web.Request, items: list[Any], *, cap: int | None = None
    ) -> tuple[list[Any], dict[str, str]] | web.Response:
        try:
            per_page = min(100, max(1, int(request.query.get("per_page", "30"))))
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            return self._json({"message": "Invalid page", "documentation_url": DOCS}, 422)
        reachable = len(items) if cap is None else min(len(items), cap)
        if cap is not None and (page - 1) * per_page >= cap:
            return self._json(
                {
                    "message": "Only the first 1000 search results are available",
                    "documentation_url": DOCS,
                },
                422,
            )
        last = max(1, -(-reachable // per_page))
        links = []

        def link(number: int, rel: str) -> str:
            query = {**request.query, "per_page": str(per_page), "page": str(number)}
            return f'<{self.url}{request.path}?{urlencode(query)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        headers = {"Link": ", ".join(links)} if links else {}
        start = (page - 1) * per_page
        return items[start : min(start + per_page, reachable)], headers

    async def _search(self, request: web.Request) -> web.Response:
        q = request.query.get("q", "")
        if not q.strip():
            return self._validation("q", "missing")
        if len(q) > MAX_QUERY_LENGTH:
            return self._validation("q", "invalid", "The search is longer than 256 characters.")
        tokens = _TOKEN.findall(q)
        if sum(1 for t in tokens if t in ("AND", "OR", "NOT")) > MAX_OPERATORS:
            return self._validation(
                "q", "invalid", "The search contains more than 5 AND / OR / NOT operators."
            )
        repos, owners, labels, kinds, states = set(), set(), [], set(), set()
        for token in tokens:
            key, sep, value = token.partition(":")
            value = value.strip('"').lower()
            if not sep:
                continue
            if key == "repo":
                repos.add(value)
            elif key in ("org", "user"):
                owners.add(value)
            elif key == "label":
                labels.append(value)
            elif key in ("is", "type", "state"):
                if value in ("issue", "pr"):
                    kinds.add(value)
                elif value in ("open", "closed"):
                    states.add(value)
        missing = sorted(r for r in repos if r in self.unsearchable)
        if missing:
            return self._validation(
                "q",
                "invalid",
                "The listed users and repositories cannot be searched either because the "
                "resources do not exist or you do not have permission to view them.",
            )
        found = []
        for (repo, number), issue in self.issues.items():
            if (repo, number) in self.search_lag:
                continue
            if (repos or owners) and not (repo in repos or repo.split("/")[0] in owners):
                continue
            names = {entry["name"].lower() for entry in issue["labels"]}
            if any(label not in names for label in labels):
                continue
            is_pr = "pull_request" in issue
            if kinds and ("pr" if is_pr else "issue") not in kinds:
                continue
            if states and issue["state"] not in states:
                continue
            found.append(issue)
        sort = request.query.get("sort")
        reverse = request.query.get("order", "desc") == "desc"
        if sort in ("created", "updated"):
            found.sort(key=lambda i: (i[f"{sort}_at"], i["id"]), reverse=reverse)
        else:
            found.sort(key=lambda i: i["id"])
        paged = self._page(request, found, cap=SEARCH_CAP)
        if isinstance(paged, web.Response):
            return paged
        items, headers = paged
        incomplete = False
        if self._incomplete > 0:
            self._incomplete -= 1
            incomplete = True
            items = items[:-1]
        body = {
            "total_count": len(found),
            "incomplete_results": incomplete,
            "items": [{**item, "score": 1.0} for item in items],
        }
        response = self._json(body)
        response.headers.update(headers)
        return response

    async def _get_issue(self, request: web.Request) -> web.Response:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        issue = self.issues.get((repo, int(request.match_info["number"])))
        if issue is None:
            return self._json({"message": "Not Found", "documentation_url": DOCS}, 404)
        return self._json(issue)

    def _issue_of(self, request: web.Request) -> dict[str, Any] | None:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        return self.issues.get((repo, int(request.match_info["number"])))

    async def _add_labels(self, request: web.Request) -> web.Response:
        """POST /repos/{owner}/{repo}/issues/{number}/labels {"labels": [...]}: the issue's
        labels afterwards (200), as GitHub documents."""
        issue = self._issue_of(request)
        if issue is None:
            return self._json({"message": "Not Found", "documentation_url": DOCS}, 404)
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

    def _pull_of(self, request: web.Request) -> dict[str, Any] | None:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        return self.pulls.get((repo, int(request.match_info["number"])))

    def _not_found(self) -> web.Response:
        return self._json({"message": "Not Found", "documentation_url": DOCS}, 404)

    async def _get_pull(self, request: web.Request) -> web.Response:
        pull = self._pull_of(request)
        return self._not_found() if pull is None else self._json(pull)

    async def _list_reviews(self, request: web.Request) -> web.Response:
        if self._pull_of(request) is None:
            return self._not_found()
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        page = self._page(request, self.reviews.get((repo, int(request.match_info["number"])), []))
        if isinstance(page, web.Response):
            return page
        items, headers = page
        response = self._json(items)
        response.headers.update(headers)
        return response

    async def _check_runs(self, request: web.Request) -> web.Response:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        runs = self.check_runs.get((repo, request.match_info["sha"]), [])
        page = self._page(request, runs)
        if isinstance(page, web.Response):
            return page
        items, headers = page
        response = self._json({"total_count": len(runs), "check_runs": items})
        response.headers.update(headers)
        return response

    async def _combined_status(self, request: web.Request) -> web.Response:
        """GitHub's combined state: failure if any is error/failure, pending if any is pending
        or there are none, else success."""
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        sha = request.match_info["sha"]
        statuses = self.statuses.get((repo, sha), [])
        states = {item["state"] for item in statuses}
        if states & {"error", "failure"}:
            state = "failure"
        elif "pending" in states or not statuses:
            state = "pending"
        else:
            state = "success"
        return self._json(
            {"state": state, "sha": sha, "total_count": len(statuses), "statuses": statuses}
        )

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

    async def _get_contents(self, request: web.Request) -> web.Response:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        path = request.match_info["path"]
        data = self.files.get((repo.lower(), path))
        if data is None:
            return self._json(
                {"message": "Not Found", "documentation_url": f"{DOCS}/repos/contents"}, 404
            )
        encoded = base64.b64encode(data).decode()
        wrapped = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n"
        sha = blob_sha(data)
        url = f"{self.url}/repos/{repo}/contents/{path}"
        return self._json(
            {
                "type": "file",
                "encoding": "base64",
                "size": len(data),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "content": wrapped,
                "sha": sha,
                "url": f"{url}?ref=main",
                "git_url": f"{self.url}/repos/{repo}/git/blobs/{sha}",
                "html_url": f"https://github.com/{repo}/blob/main/{path}",
                "download_url": f"https://raw.githubusercontent.com/{repo}/main/{path}",
                "_links": {
                    "self": f"{url}?ref=main",
                    "git": f"{self.url}/repos/{repo}/git/blobs/{sha}",
                    "html": f"https://github.com/{repo}/blob/main/{path}",
                },
            }
        )

    async def _list_issues(self, request: web.Request) -> web.Response:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        state = request.query.get("state", "open")
        wanted = [n.strip().lower() for n in request.query.get("labels", "").split(",") if n]
        found = [
            issue
            for (issue_repo, _), issue in sorted(self.issues.items())
            if issue_repo == repo
            and (state == "all" or issue["state"] == state)
            and all(w in {e["name"].lower() for e in issue["labels"]} for w in wanted)
        ]
        paged = self._page(request, found)
        if isinstance(paged, web.Response):
            return paged
        items, headers = paged
        response = self._json(items)
        response.headers.update(headers)
        return response

    def _validation(self, field_name: str, code: str, message: str | None = None) -> web.Response:
        error: dict[str, Any] = {"resource": "Search", "field": field_name, "code": code}
        if message:
            error["message"] = message
        return self._json(
            {"message": "Validation Failed", "errors": [error], "documentation_url": DOCS}, 422
        )


def blob_sha(data: bytes) -> str:
    """The git blob sha of a file's content, as the contents API reports it."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def _default_message(status: int) -> str:
    return {
        400: "Bad Request",
        401: "Bad credentials",
        403: "Forbidden",
        404: "Not Found",
        422: "Validation Failed",
        500: "Server Error",
        502: "Server Error",
        503: "Service Unavailable",
    }.get(status, "Error")


def _request_id() -> str:
    return uuid.uuid4().hex[:16].upper()


# --- webhooks -------------------------------------------------------------------------------------


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


def _sender() -> dict[str, Any]:
    return {"login": "octocat", "id": 1, "type": "User"}


def _label(name: str) -> dict[str, Any]:
    return {"id": 1, "node_id": f"LA_{name}", "name": name, "color": "ededed", "default": False}


API = "https://api.github.com"


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
        "labels": [_label(name) for name in labels],
        "html_url": f"https://github.com/{repo}/issues/{number}",
        "url": f"{API}/repos/{repo}/issues/{number}",
        "repository_url": f"{API}/repos/{repo}",
        "user": _sender(),
        "body": None,
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-01T00:00:01Z",
    }


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
        "repository": _repository(repo, API),
        "sender": _sender(),
    }
    if label is not None:
        payload["label"] = _label(label)
    return payload


def pull_request_object(
    repo: str, number: int, *, body: str | None = None, merged: bool = False, state: str = "open"
) -> dict[str, Any]:
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


def pull_request_payload(
    action: str, repo: str, number: int, *, body: str | None = None, merged: bool = False
) -> dict[str, Any]:
    """`pull_request` event: opened, closed (with merged true/false), …"""
    state = "closed" if action == "closed" else "open"
    return {
        "action": action,
        "number": number,
        "pull_request": pull_request_object(repo, number, body=body, merged=merged, state=state),
        "repository": _repository(repo, API),
        "sender": _sender(),
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
        "repository": _repository(repo, API),
        "sender": _sender(),
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
        "repository": _repository(repo, API),
        "sender": _sender(),
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
        "repository": _repository(repo, API),
        "sender": _sender(),
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
    repository = {**_repository(repo, API), "default_branch": default_branch}
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
        "sender": _sender(),
    }


def ping_payload(hook_id: int = 4242) -> dict[str, Any]:
    return {
        "zen": "Keep it logically awesome.",
        "hook_id": hook_id,
        "hook": {"type": "Repository", "id": hook_id, "events": ["issues", "pull_request"]},
        "sender": _sender(),
    }
