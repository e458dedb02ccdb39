"""`GET /search/issues`: `q` with `repo:`, `org:`, `user:`, `label:` (quoted or not), `is:issue`,
`is:pr`, `is:open`, `is:closed`, `state:`; `sort=created|updated`, `order`, `per_page` (max
100), `page`; `total_count`, `incomplete_results`, `items`. A query over 256 characters or with
more than five AND/OR/NOT operators is a 422 "Validation Failed", as is a `repo:` that does not
exist (`unsearchable`), and asking past the first 1,000 results.

The search has its own rate-limit window (see the server). `search_lag` holds issues the index
has not caught up with (searches miss them, GETs do not); `incomplete()` makes the next searches
say incomplete_results and drop their last item."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from tests.fakes.github.issues import Issues
from tests.fakes.github.server import RecordedRequest

MAX_QUERY_LENGTH = 256
MAX_OPERATORS = 5
SEARCH_CAP = 1000
_TOKEN = re.compile(r'(?:[^\s"]+:"[^"]*"|"[^"]*"|\S+)')


class Search(Issues):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unsearchable: set[str] = set()  # repos a search refuses (422), lower-cased
        # Issues the search index has not caught up with: searches miss them, GETs do not.
        self.search_lag: set[tuple[str, int]] = set()
        self._incomplete = 0

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/search/issues", self._search)

    def incomplete(self, times: int = 1) -> None:
        """The next `times` searches report incomplete_results and miss their last item."""
        self._incomplete += times

    def searches(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/search/issues"]

    def search_queries(self) -> list[str]:
        return [r.query.get("q", "") for r in self.searches()]

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
