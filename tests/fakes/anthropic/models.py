"""The Models API: `GET /v1/models` — one model in the list shape (`{data, has_more,
first_id, last_id}`), as deep health asks it; needs a key."""

from __future__ import annotations

from aiohttp import web

from tests.fakes.anthropic.server import Server, credential, error_body


class Models(Server):
    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/v1/models", self._models)

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not credential(request):
            return self._json(401, error_body(401, "x-api-key header is required"))
        model = {
            "type": "model",
            "id": "claude-haiku-4-5",
            "display_name": "Claude Haiku 4.5",
            "created_at": "2025-10-01T00:00:00Z",
        }
        body = {"data": [model], "has_more": False, "first_id": model["id"], "last_id": model["id"]}
        return self._json(200, body)
