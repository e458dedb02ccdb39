"""POST /api/webhook/github: signed GitHub deliveries become lifecycle events.

A delivery is verified before anything else is read from it, so a stranger's body costs
nothing, and it is answered within ACK_WITHIN (202 while the work goes on), so GitHub never
waits on us. A failure while we still answer is a 5xx, so GitHub shows the delivery as failed
and it can be redelivered; a redelivery stores nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from bot.errors import Forbidden, InvalidInput, Unauthorized
from bot.services.github.webhooks import verify_signature
from bot.web.api import json_response
from bot.web.guard import read_body
from bot.web.keys import BACKGROUND, CONTEXT, SERVICES

log = logging.getLogger(__name__)

ACK_WITHIN = 0.5  # seconds: leaves half of "answered within a second" for the network
# GitHub caps payloads at 25 MB, but the events we act on (issues, pull requests, reviews,
# check suites and runs) are a few KB, and tens of KB with a long issue body. 1 MiB leaves
# that room many times over while a stranger's bodies cost little memory.
MAX_DELIVERY_BYTES = 1024 * 1024

routes = web.RouteTableDef()


@routes.post("/api/webhook/github")
async def github_webhook(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    secret = context.settings.github_webhook_secret
    if secret is None:
        raise Forbidden("webhooks are refused: CONDUCTOR_GITHUB_WEBHOOK_SECRET is not set")
    signature = request.headers.get("X-Hub-Signature-256")
    if not signature:
        # Decided from the headers alone: a stranger's body is never read.
        raise Unauthorized("the X-Hub-Signature-256 signature is missing or wrong")
    body = await read_body(request, MAX_DELIVERY_BYTES)
    if not verify_signature(secret.get_secret_value().encode(), body, signature):
        raise Unauthorized("the X-Hub-Signature-256 signature is missing or wrong")

    event_name = request.headers.get("X-GitHub-Event", "")
    delivery = request.headers.get("X-GitHub-Delivery", "")
    if not event_name or not delivery or len(delivery) > 100:
        raise InvalidInput("the X-GitHub-Event and X-GitHub-Delivery headers are required")
    if event_name == "ping":
        return json_response({"status": "pong", "delivery": delivery})
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("the delivery is not valid JSON") from None
    if not isinstance(payload, dict):
        raise InvalidInput("the delivery must be a JSON object")

    task = asyncio.create_task(
        request.app[SERVICES].webhooks.handle(event_name, delivery, payload),
        name=f"webhook-{delivery}",
    )
    background = request.app[BACKGROUND]
    background.add(task)
    task.add_done_callback(_finished(background, delivery))
    try:
        result = await asyncio.wait_for(asyncio.shield(task), ACK_WITHIN)
    except TimeoutError:
        return json_response({"status": "accepted", "delivery": delivery}, status=202)
    return json_response(
        {
            "status": "processed",
            "delivery": delivery,
            "appended": [{"streamId": s, "type": t} for s, t in result.appended],
            "duplicates": result.duplicates,
            "skipped": result.skipped,
        }
    )


def _finished(background: set[asyncio.Task[object]], delivery: str):  # type: ignore[no-untyped-def]
    def done(task: asyncio.Task[object]) -> None:
        background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "webhook delivery %s failed in the background: %s",
                delivery,
                type(task.exception()).__name__,
            )

    return done


async def drain_background(app: web.Application) -> None:
    """On shutdown: let deliveries still being processed finish (bounded)."""
    running = app[BACKGROUND]
    pending = set(running)
    if pending:
        await asyncio.wait(pending, timeout=10)


def add_routes(app: web.Application) -> None:
    app.router.add_routes(routes)
    app.on_shutdown.append(drain_background)
