"""The steering API for scripts: the /issue and /agent steering commands over HTTP.

Scripts steer the work through the same service as people in Discord, so the rules, events and
audit trail are the commands' (bot/services/work/steering.py), with `api:<token name>` as the
actor. The routes are never open: without CONDUCTOR_STEER_TOKENS they answer 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.errors import Forbidden, InvalidInput, Unauthorized
from bot.services.work.steering import Steered, SteeringService
from bot.web.auth import same_secret
from bot.web.guard import json_body
from bot.web.keys import CONTEXT, SERVICES

routes = web.RouteTableDef()
ISSUE = "/api/issues/{owner}/{repo}/{number:[0-9]+}/"
AGENT = "/api/agents/{agent_id}/"


def steer_actor(request: web.Request) -> str:
    """`api:<name>` of a valid steer token; 403 when no steer token is configured."""
    tokens = request.app[CONTEXT].settings.steer_tokens
    if not tokens:
        raise Forbidden("the steering API is off: CONDUCTOR_STEER_TOKENS is not set")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("a bearer token with the steer scope is required")
    match = None
    for name, token in tokens.items():
        # Compare against every token so the time taken does not tell which one matched.
        if same_secret(presented.strip(), token.get_secret_value()):
            match = name
    if match is None:
        raise Unauthorized("the bearer token is not a steer token")
    return f"api:{match}"


def _body(request: web.Request) -> dict[str, Any]:
    body = json_body(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"field {name!r} must be a non-empty string")
    return value


def _issue_ref(request: web.Request) -> str:
    info = request.match_info
    return f"{info['owner']}/{info['repo']}#{info['number']}"


async def _answer(run: Callable[[], Awaitable[Steered]]) -> web.Response:
    done = await run()
    return web.json_response(
        {
            "action": done.action,
            "target": done.target,
            "summary": done.summary,
            "position": done.position,
        }
    )


def _service(request: web.Request) -> SteeringService:
    return request.app[SERVICES].steering


@routes.post(ISSUE + "{action:hold|unhold|requeue|assign|priority|approve}")
async def steer_issue(request: web.Request) -> web.Response:
    actor = steer_actor(request)
    body = _body(request)
    ref, service, action = _issue_ref(request), _service(request), request.match_info["action"]
    if action == "hold":
        return await _answer(lambda: service.hold(ref, actor, _text(body, "reason")))
    if action == "unhold":
        return await _answer(lambda: service.unhold(ref, actor))
    if action == "requeue":
        return await _answer(lambda: service.requeue(ref, actor, _text(body, "reason")))
    if action == "assign":
        agent = _text(body, "agentId", required=True) or ""
        return await _answer(lambda: service.assign(ref, agent, actor))
    if action == "priority":
        priority = _text(body, "priority", required=True) or ""
        return await _answer(lambda: service.priority(ref, priority, actor))
    return await _answer(lambda: service.approve(ref, actor, _text(body, "priority")))


@routes.post(AGENT + "{action:pause|resume}")
async def steer_agent(request: web.Request) -> web.Response:
    actor = steer_actor(request)
    body = _body(request)
    agent, service = request.match_info["agent_id"], _service(request)
    if request.match_info["action"] == "pause":
        return await _answer(lambda: service.pause(agent, actor, _text(body, "reason")))
    return await _answer(lambda: service.resume(agent, actor))


def add_routes(app: web.Application) -> None:
    app.router.add_routes(routes)
