"""Pull request reviews: `GET /repos/{o}/{r}/pulls/{n}/reviews`, each with the `commit_id` it
was given on. A test adds them with `add_review` (on the head unless told otherwise)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.github.objects import iso
from tests.fakes.github.pulls import Pulls
from tests.fakes.github.server import repo_of


class Reviews(Pulls):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reviews: dict[tuple[str, int], list[dict[str, Any]]] = {}

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/repos/{owner}/{repo}/pulls/{number:\\d+}/reviews", self._list_reviews)

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

    async def _list_reviews(self, request: web.Request) -> web.Response:
        if self._pull_of(request) is None:
            return self._not_found()
        key = (repo_of(request), int(request.match_info["number"]))
        return self._listing(request, self.reviews.get(key, []))
