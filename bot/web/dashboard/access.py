"""Who may read the dashboard: everyone, or with a token (CONDUCTOR_DASHBOARD_TOKEN) only those
who present it as `Authorization: Bearer`, `?token=`, or the session cookie the login sets.

The cookie holds an HMAC of the token, never the token itself.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from bot.errors import Unauthorized
from bot.web.auth import same_secret

COOKIE = "conductor_dashboard"
TOKEN: web.AppKey[str | None] = web.AppKey("dashboard_token")


def _session_value(token: str) -> str:
    return hmac.new(token.encode(), b"conductor-e dashboard session", hashlib.sha256).hexdigest()


def _presented_token(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token") or None


def is_authorised(request: web.Request) -> bool:
    """True when the dashboard is open or the request carries the token or the session cookie."""
    token = request.app[TOKEN]
    if token is None:
        return True
    presented = _presented_token(request)
    if presented is not None and same_secret(presented, token):
        return True
    cookie = request.cookies.get(COOKIE)
    return cookie is not None and same_secret(cookie, _session_value(token))


def require_access(request: web.Request) -> None:
    if not is_authorised(request):
        raise Unauthorized(
            "the dashboard needs its token: Authorization: Bearer <token>, ?token=, or log in at /"
        )


def with_session(response: web.StreamResponse, request: web.Request) -> web.StreamResponse:
    """`response` with the session cookie set (the dashboard has a token)."""
    token = request.app[TOKEN]
    assert token is not None
    response.set_cookie(
        COOKIE,
        _session_value(token),
        httponly=True,
        samesite="Strict",
        # Behind a TLS-terminating proxy the request itself is plain HTTP.
        secure=request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https",
        max_age=30 * 24 * 3600,
        path="/",
    )
    return response
