"""The page at `/`, and with a token the login form in its place (its HTML in
bot/web/templates/login.html: outside the static files, which are served to anyone).

Wrong tokens are throttled per client address, so the form is no oracle for guessing.
"""

from __future__ import annotations

import functools
import html
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from bot.web.auth import same_secret
from bot.web.dashboard.access import TOKEN, is_authorised, with_session

WEB_DIR = Path(__file__).resolve().parents[1]
STATIC_DIR = WEB_DIR / "static"
LOGIN_TEMPLATE = WEB_DIR / "templates" / "login.html"

# Wrong tokens allowed per client address in a sliding window, before the form answers 429.
LOGIN_ATTEMPTS = 5
LOGIN_WINDOW_SECONDS = 60.0


class LoginThrottle:
    """Failed logins per client address in the last LOGIN_WINDOW_SECONDS (in memory; bounded:
    the oldest addresses are forgotten first)."""

    MAX_CLIENTS = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client, deque())
        cutoff = self.clock() - LOGIN_WINDOW_SECONDS
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures

    def blocked(self, client: str) -> bool:
        return len(self._recent(client)) >= LOGIN_ATTEMPTS

    def failed(self, client: str) -> None:
        failures = self._recent(client)
        failures.append(self.clock())
        self._failures.pop(client, None)
        self._failures[client] = failures  # most recent last
        while len(self._failures) > self.MAX_CLIENTS:
            del self._failures[next(iter(self._failures))]


LOGIN_THROTTLE = web.AppKey("dashboard_login_throttle", LoginThrottle)


@functools.cache
def _login_template() -> str:
    return LOGIN_TEMPLATE.read_text(encoding="utf-8")


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _login_page(error: str | None = None, status: int = 401) -> web.Response:
    shown = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return web.Response(
        text=_login_template().format(error=shown),
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


async def page(request: web.Request) -> web.StreamResponse:
    """The dashboard page; with a token, the login form until the token is presented."""
    if not is_authorised(request):
        wrong = "token" in request.query
        return _login_page("That token is not valid." if wrong else None)
    if request.app[TOKEN] is not None and "token" in request.query:
        # Trade the token in the address bar for the session cookie, and drop it from the URL.
        return with_session(_see_other("./"), request)
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def login(request: web.Request) -> web.StreamResponse:
    """The login form's target: sets the session cookie and goes back to the page."""
    if request.app[TOKEN] is None:
        return _see_other("../")
    throttle = request.app[LOGIN_THROTTLE]
    client = request.remote or "unknown"
    if throttle.blocked(client):
        return _login_page(
            f"Too many wrong tokens: try again in {LOGIN_WINDOW_SECONDS:.0f} seconds.",
            status=429,
        )
    form = await request.post()
    presented = form.get("token")
    token = request.app[TOKEN]
    assert token is not None
    if not isinstance(presented, str) or not same_secret(presented, token):
        throttle.failed(client)
        return _login_page("That token is not valid.")
    return with_session(_see_other("../"), request)
