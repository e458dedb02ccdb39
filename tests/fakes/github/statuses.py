"""Commit statuses: `GET /repos/{o}/{r}/commits/{sha}/status`, GitHub's combined state —
failure if any is error or failure, pending if any is pending or there are none, else success.
A test sets them with `set_status`; the latest per context wins."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.github.server import Server, repo_of


class Statuses(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/repos/{owner}/{repo}/commits/{sha}/status", self._combined_status)

    def set_status(self, repo: str, sha: str, context: str, state: str) -> None:
        """A commit status (error | failure | pending | success); latest per context wins."""
        statuses = self.statuses.setdefault((repo.lower(), sha), [])
        statuses[:] = [item for item in statuses if item["context"] != context]
        statuses.append({"context": context, "state": state, "description": None})

    async def _combined_status(self, request: web.Request) -> web.Response:
        """GitHub's combined state: failure if any is error/failure, pending if any is pending
        or there are none, else success."""
        sha = request.match_info["sha"]
        statuses = self.statuses.get((repo_of(request), sha), [])
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
