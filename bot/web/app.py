"""The aiohttp application: middleware (errors, auth, metrics) and route registration."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from bot.context import AppContext
from bot.errors import PayloadTooLarge, reference_id, to_user_facing
from bot.services.health.checks import HealthService
from bot.services.intake.events import EventService
from bot.web import api, dashboard, metrics, steer, webhooks
from bot.web.guard import guard_middleware, secure_headers
from bot.web.keys import BACKGROUND, CONTEXT, EVENTS, HEALTH, MAX_BODY_BYTES, METRICS
from bot.web.metrics import CLIENT_CLOSED

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


# During an outage every request fails the same way: say so once per interval, with a count.
# Keyed by the error code, not the message: one outage surfaces as several exception classes
# (connection refused, reset, "the database system is starting up") and is still one problem.
WARN_INTERVAL = 10.0
_warned: dict[str, tuple[float, int]] = {}


def _warn_throttled(code: str, message: str) -> None:
    now = time.monotonic()
    since, repeats = _warned.get(code, (0.0, 0))
    if now - since >= WARN_INTERVAL:
        more = f" ({repeats} more like it in the last {WARN_INTERVAL:.0f}s)" if repeats else ""
        log.warning("request failed: %s%s", message, more)
        _warned[code] = (now, 0)
    else:
        _warned[code] = (since, repeats + 1)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON `{"error", "message"}`; never a stack trace."""
    try:
        return await handler(request)
    except ConnectionResetError:
        # The client went away (mid-body, or before its answer): not our error, nobody to
        # answer. Counted as 499 in the metrics.
        log.debug("client went away during %s %s", request.method, request.path)
        return error_response(CLIENT_CLOSED, "client_closed", "the client closed the request")
    except RequestPayloadError as exc:
        return error_response(400, "invalid_request", f"the body could not be read: {exc}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:  # aiohttp's own, past client_max_size
            too_large = PayloadTooLarge(MAX_BODY_BYTES)
            return error_response(too_large.status, too_large.code, too_large.message)
        code = _HTTP_CODES.get(exc.status, "error")
        return error_response(exc.status, code, exc.reason or code)
    except Exception as exc:
        known = to_user_facing(exc)
        if known is not None:
            if known.status >= 500:
                _warn_throttled(known.code, known.message)
            return error_response(known.status, known.code, known.message)
        ref = reference_id()
        log.exception("unexpected error on %s %s (ref %s)", request.method, request.path, ref)
        return error_response(500, "internal", f"internal error (ref {ref})")


def create_app(context: AppContext) -> web.Application:
    """The API application, sharing the process's pool and HTTP session."""
    app_metrics = metrics.Metrics()
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[app_metrics.middleware, errors_middleware, guard_middleware],
    )
    app.on_response_prepare.append(secure_headers)
    app[CONTEXT] = context
    app[EVENTS] = EventService(context)
    app[HEALTH] = HealthService(context)
    app[METRICS] = app_metrics
    app[BACKGROUND] = set()
    api.add_routes(app)
    steer.add_routes(app)
    webhooks.add_routes(app)
    dashboard.add_routes(app)
    app.router.add_get("/metrics", app_metrics.handler(context))
    return app
