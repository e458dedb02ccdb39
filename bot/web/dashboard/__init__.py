"""The read-only dashboard: the page at `/`, its data under /dashboard/api, live updates by SSE.

`add_routes(app)` is all an application needs. The page and its login are in `login`, who may
read in `access`, the JSON in `routes`, the event stream and the hub behind it in `sse`. The
static files (HTML shell, CSS, JS) hold no data and are served to anyone.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.web.dashboard import routes, sse
from bot.web.dashboard.access import TOKEN
from bot.web.dashboard.login import LOGIN_THROTTLE, STATIC_DIR, LoginThrottle, login, page
from bot.web.dashboard.sse import HUB, DashboardHub
from bot.web.keys import CONTEXT

_UNSET: Any = object()


def add_routes(app: web.Application, *, token: str | None = _UNSET) -> None:
    """Serve the dashboard from `app` (which must already carry its CONTEXT and SERVICES).

    The token comes from the settings (`dashboard_token`, CONDUCTOR_DASHBOARD_TOKEN) unless
    given here; None leaves the dashboard open.
    """
    context = app[CONTEXT]
    if token is _UNSET:
        configured = context.settings.dashboard_token
        token = configured.get_secret_value() if configured is not None else None
    app[TOKEN] = token or None
    app[HUB] = DashboardHub(context)
    app[LOGIN_THROTTLE] = LoginThrottle()
    app.on_shutdown.append(_close_hub)
    app.router.add_get("/", page)
    app.router.add_post("/dashboard/login", login)
    app.router.add_get("/dashboard/api/board", routes.board)
    app.router.add_get("/dashboard/api/agents", routes.agents)
    app.router.add_get("/dashboard/api/spend", routes.spend)
    app.router.add_get("/dashboard/api/runs", routes.runs)
    app.router.add_get("/dashboard/api/health", routes.health)
    app.router.add_get("/dashboard/events", sse.events)
    app.router.add_static("/dashboard/static/", STATIC_DIR, name="dashboard-static")


async def _close_hub(app: web.Application) -> None:
    # on_shutdown runs before the server waits for open requests: ending the event streams
    # here keeps them from holding a graceful shutdown for its whole grace period.
    await app[HUB].close()
