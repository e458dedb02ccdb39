"""Check runs on a commit: `GET /repos/{o}/{r}/commits/{sha}/check-runs` (`total_count`,
`check_runs`, paginated). A test sets them with `set_check`; the same name again replaces the
run, as a re-run shows on GitHub."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.github.server import Server, repo_of


class Checks(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check_runs: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/repos/{owner}/{repo}/commits/{sha}/check-runs", self._check_runs)

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

    async def _check_runs(self, request: web.Request) -> web.Response:
        runs = self.check_runs.get((repo_of(request), request.match_info["sha"]), [])
        page = self._page(request, runs)
        if isinstance(page, web.Response):
            return page
        items, headers = page
        response = self._json({"total_count": len(runs), "check_runs": items})
        response.headers.update(headers)
        return response
