"""The /api routes, /health and /healthz/deep: the contract the agents speak today."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from bot.errors import InvalidInput, NotFound
from bot.services.costs.ledger import MAX_DAYS
from bot.services.intake.events import check_agent_id
from bot.web.auth import actor_for
from bot.web.guard import json_body, refuse_browser
from bot.web.keys import CONTEXT, METRICS, SERVICES
from store.catalogue import CATALOGUE, parse_issue_stream
from store.events import RecordedEvent, field_names
from store.projections import ISSUE_STATES, Agent, ExecutionLog, Issue, UsageRow

routes = web.RouteTableDef()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer, encoded by orjson (a tenth of json.dumps' time for the queue's page).

    What orjson will not write (an integer beyond 64 bits, a key that is not a string) is
    left to json.dumps, so every answer that could be written still is."""
    try:
        body = orjson.dumps(data, default=_default)
    except orjson.JSONEncodeError:
        body = json.dumps(data, default=_default).encode()
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_CAMEL_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {}


def _camel_json(obj: Any) -> dict[str, Any]:
    """A dataclass's fields under their camelCase names, for a JSON answer. Shallow: it is
    serialised at once (dataclasses.asdict deep-copies every list and dict on the way)."""
    names = _CAMEL_FIELDS.get(type(obj))
    if names is None:
        names = _CAMEL_FIELDS[type(obj)] = tuple(
            (name, _camel(name)) for name in field_names(type(obj))
        )
    return {camel: getattr(obj, name) for name, camel in names}


def issue_json(issue: Issue) -> dict[str, Any]:
    data = _camel_json(issue)
    data["issueNumber"] = data.pop("number")
    return data


def agent_json(agent: Agent) -> dict[str, Any]:
    return _camel_json(agent)


def event_json(event: RecordedEvent) -> dict[str, Any]:
    return _camel_json(event)


def usage_json(row: UsageRow) -> dict[str, Any]:
    return _camel_json(row)


def int_param(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"query parameter {name!r} must be an integer") from None
    if not low <= value <= high:
        raise InvalidInput(f"query parameter {name!r} must be between {low} and {high}")
    return value


# --- health ---------------------------------------------------------------------------------


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Liveness only: the process answers. Dependencies are /healthz/deep's business."""
    now = request.app[CONTEXT].clock()
    return json_response({"status": "healthy", "timestamp": now})


@routes.get("/healthz/deep")
async def deep_health(request: web.Request) -> web.Response:
    report = await request.app[SERVICES].health.check()
    body = {
        "status": "healthy" if report.ok else "unhealthy",
        "timestamp": request.app[CONTEXT].clock(),
        "components": [c.as_json() for c in report.components],
    }
    return json_response(body, status=200 if report.ok else 503)


# --- events ---------------------------------------------------------------------------------


@routes.post("/api/events")
async def post_event(request: web.Request) -> web.Response:
    actor = actor_for(request)
    payload = json_body(request)
    result = await request.app[SERVICES].events.record(
        payload,
        actor,
        correlation_id=_bounded_header(request, "X-Request-Id"),
        idempotency_key=_bounded_header(request, "Idempotency-Key"),
    )
    request.app[METRICS].appends.labels(payload["type"]).inc(0 if result.duplicate else 1)
    return json_response(
        {
            "streamId": result.stream_id,
            "type": payload["type"],
            "position": result.last_position,
            "version": result.version,
            "timestamp": result.recorded_at,
            "duplicate": result.duplicate,
        }
    )


def _bounded_header(request: web.Request, name: str) -> str | None:
    """A header kept with the event (the guard saw it is printable ASCII), 1 to 200 chars."""
    value = request.headers.get(name)
    if value is not None and not 1 <= len(value) <= 200:
        raise InvalidInput(f"the {name} header must be 1 to 200 characters")
    return value


@routes.get("/api/events/stream")
async def read_stream(request: web.Request) -> web.Response:
    stream_id = request.query.get("id")
    if not stream_id:
        raise InvalidInput("query parameter 'id' is required (e.g. owner/repo#12)")
    if len(stream_id) > 300:
        raise InvalidInput("query parameter 'id' is too long")
    events = await request.app[CONTEXT].store.read_stream(stream_id)
    if not events:
        raise NotFound(f"no events in stream {stream_id!r}")
    return json_response(
        {
            "streamId": stream_id,
            "version": events[-1].version,
            "events": [event_json(e) for e in events],
        }
    )


@routes.get("/api/events")
async def read_events(request: web.Request) -> web.Response:
    """Events after a position (`after`), oldest first; or the latest (`after` absent)."""
    context = request.app[CONTEXT]
    limit = int_param(request, "limit", 100, low=1, high=1000)
    types = [t for t in request.query.getall("type", []) if t]
    for event_type in types:
        if event_type not in CATALOGUE:
            raise InvalidInput(f"unknown event type {event_type!r}")
    if "after" in request.query:
        after = int_param(request, "after", 0, low=0, high=2**62)
        events = await context.store.read_all(after, limit, types=types or None)
    else:
        events = await context.store.read_recent(limit, types=types or None)
    return json_response({"events": [event_json(e) for e in events]})


# --- issues, queue and claims ---------------------------------------------------------------


@routes.get("/api/issues")
async def list_issues(request: web.Request) -> web.Response:
    state = request.query.get("state") or None
    if state is not None and state not in ISSUE_STATES:
        raise InvalidInput(f"query parameter 'state' must be one of {', '.join(ISSUE_STATES)}")
    limit = int_param(request, "limit", 100, low=1, high=1000)
    offset = int_param(request, "offset", 0, low=0, high=10_000_000)
    issues = await request.app[CONTEXT].projections.issues(state, limit, offset)
    return json_response({"issues": [issue_json(i) for i in issues]})


@routes.get("/api/issues/{owner}/{repo}/{number}")
async def get_issue(request: web.Request) -> web.Response:
    stream_id = (
        f"{request.match_info['owner']}/{request.match_info['repo']}#{request.match_info['number']}"
    )
    if parse_issue_stream(stream_id) is None:
        raise InvalidInput(f"{stream_id!r} is not an owner/repo#number issue")
    issue = await request.app[CONTEXT].projections.issue(stream_id)
    if issue is None:
        raise NotFound(f"no issue {stream_id}")
    return json_response(issue_json(issue))


@routes.get("/api/queue")
async def queue(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", 25, low=1, high=1000)
    offset = int_param(request, "offset", 0, low=0, high=10_000_000)
    repo = request.query.get("repo") or None
    issues = await request.app[CONTEXT].projections.queue(limit, offset, repo)
    return json_response({"queue": [issue_json(i) for i in issues]})


async def _claim(request: web.Request, kind: str) -> web.Response:
    refuse_browser(request)
    actor = actor_for(request)
    agent_id = check_agent_id(request.query.get("agentId"))
    issue = await request.app[SERVICES].events.claim(kind, agent_id, actor)
    request.app[METRICS].claims.labels(kind, "empty" if issue is None else "claimed").inc()
    if issue is None:
        return web.Response(status=204)
    return json_response(issue_json(issue))


@routes.get("/api/assignments/next")
async def next_assignment(request: web.Request) -> web.Response:
    """Claims the top queued issue for the agent (200) or says there is none (204)."""
    return await _claim(request, "issue")


@routes.get("/api/reviews/next")
async def next_review(request: web.Request) -> web.Response:
    """Claims the oldest PR waiting for a reviewer (200) or says there is none (204)."""
    return await _claim(request, "review")


# --- agents ---------------------------------------------------------------------------------


@routes.get("/api/agents")
async def list_agents(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    agents = await context.projections.agents(context.clock(), context.stale_after)
    return json_response({"agents": [agent_json(a) for a in agents]})


@routes.get(r"/api/agents/{agent_id:[\s\S]+}")  # an instance id holds a "/"
async def get_agent(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    agent_id = check_agent_id(request.match_info["agent_id"])
    agent = await context.projections.agent(agent_id, context.clock(), context.stale_after)
    if agent is None:
        raise NotFound(f"no agent {agent_id!r} has reported yet")
    return json_response(agent_json(agent))


# --- usage and costs ------------------------------------------------------------------------


def _since(request: web.Request, default_days: int) -> tuple[int, Any]:
    days = int_param(request, "days", default_days, low=1, high=3660)
    today = request.app[CONTEXT].clock().date()
    return days, today - timedelta(days=days - 1)


@routes.get("/api/usage")
async def usage(request: web.Request) -> web.Response:
    days, since = _since(request, 30)
    rows = await request.app[CONTEXT].projections.usage(since)
    return json_response(
        {"days": days, "since": since.isoformat(), "usage": [usage_json(r) for r in rows]}
    )


def _agent_param(request: web.Request) -> str | None:
    agent = request.query.get("agent") or request.query.get("agentId") or None
    return check_agent_id(agent) if agent is not None else None


@routes.get("/api/costs/summary")
async def costs_summary(request: web.Request) -> web.Response:
    """The figures of `/cost summary`: per agent and model, today vs. average, top issues."""
    days = int_param(request, "days", 7, low=1, high=MAX_DAYS)
    summary = await request.app[SERVICES].costs.summary(days, _agent_param(request))
    return json_response(summary.to_dict())


@routes.get("/api/costs/daily")
async def costs_daily(request: web.Request) -> web.Response:
    """USD per day and agent (the chart's series)."""
    days = int_param(request, "days", 7, low=1, high=MAX_DAYS)
    series = await request.app[SERVICES].costs.daily(days, _agent_param(request))
    return json_response(series.to_dict())


@routes.get("/api/costs/issue")
async def costs_issue(request: web.Request) -> web.Response:
    """The figures of `/cost issue`: what one issue cost, by agent and model
    (`?unattributed=true`: the usage that named no issue)."""
    if request.query.get("unattributed", "").lower() in ("1", "true"):
        return json_response((await request.app[SERVICES].costs.issue(None, None)).to_dict())
    repo = request.query.get("repo") or ""
    number = int_param(request, "issueNumber", 0, low=1, high=2_147_483_647)
    if not repo or not number:
        raise InvalidInput("query parameters 'repo' and 'issueNumber' are required")
    cost = await request.app[SERVICES].costs.issue(repo, number)
    return json_response(cost.to_dict())


# --- execution logs and the merge gate (the agent runtime's stream consumer) -----------------


def execution_log_json(log: ExecutionLog) -> dict[str, Any]:
    data = _camel_json(log)
    data["logs"] = data.pop("logLines")
    return data


def _log_id(request: web.Request) -> str:
    return request.match_info["log_id"]


@routes.post("/api/execution-logs")
async def create_execution_log(request: web.Request) -> web.Response:
    """A new run: `{repo, issueNumber, agentId, status, model, steps}` → 201 `{id, ...}`."""
    actor = actor_for(request)
    log = await request.app[SERVICES].execution_logs.create(json_body(request), actor)
    return json_response(execution_log_json(log), status=201)


@routes.post("/api/execution-logs/{log_id}/steps")
async def add_execution_step(request: web.Request) -> web.Response:
    actor = actor_for(request)
    service = request.app[SERVICES].execution_logs
    log = await service.add_step(_log_id(request), json_body(request), actor)
    return json_response({"id": log.id, "steps": len(log.steps)})


@routes.post("/api/execution-logs/{log_id}/logs")
async def add_execution_log_lines(request: web.Request) -> web.Response:
    actor = actor_for(request)
    service = request.app[SERVICES].execution_logs
    log, dropped = await service.add_lines(_log_id(request), json_body(request), actor)
    return json_response({"id": log.id, "logs": len(log.log_lines), "dropped": dropped})


@routes.post("/api/execution-logs/{log_id}/complete")
async def complete_execution_log(request: web.Request) -> web.Response:
    actor = actor_for(request)
    service = request.app[SERVICES].execution_logs
    log = await service.complete(_log_id(request), json_body(request), actor)
    return json_response(execution_log_json(log))


@routes.get("/api/execution-logs/{log_id}")
async def get_execution_log(request: web.Request) -> web.Response:
    log = await request.app[SERVICES].execution_logs.get(_log_id(request))
    return json_response(execution_log_json(log))


@routes.get("/api/execution-logs")
async def list_execution_logs(request: web.Request) -> web.Response:
    """Runs, newest first: `?repo=owner/repo&issueNumber=N` (either or both), `limit`."""
    repo = request.query.get("repo") or None
    number = int_param(request, "issueNumber", 0, low=0, high=2_147_483_647) or None
    limit = int_param(request, "limit", 50, low=1, high=500)
    logs = await request.app[SERVICES].execution_logs.find(repo, number, limit)
    return json_response({"executionLogs": [execution_log_json(log) for log in logs]})


@routes.post("/api/merge")
async def request_merge(request: web.Request) -> web.Response:
    """`{repo, prNumber}` → 202: recorded for the merge gate, which says whether it is on."""
    actor = actor_for(request)
    merge = await request.app[SERVICES].events.request_merge(json_body(request), actor)
    return json_response(
        {
            "status": "recorded",
            "streamId": merge.stream_id,
            "position": merge.position,
            "gate": merge.gate,
            "merged": False,
            "message": merge.message,
        },
        status=202,
    )


@routes.post("/api/agent-logs")
async def add_agent_logs(request: web.Request) -> web.Response:
    """The runtime's activity log `{agentId, entries}` → 202 `{accepted, dropped}`."""
    actor = actor_for(request)
    accepted, dropped = await request.app[SERVICES].agent_logs.add(json_body(request), actor)
    return json_response({"accepted": accepted, "dropped": dropped}, status=202)


@routes.get("/api/agent-logs")
async def list_agent_logs(request: web.Request) -> web.Response:
    """An agent's newest log lines, newest first: `?agentId=A&limit=N`."""
    agent_id = check_agent_id(request.query.get("agentId"))
    limit = int_param(request, "limit", 100, low=1, high=1000)
    lines = await request.app[SERVICES].agent_logs.recent(agent_id, limit)
    return json_response(
        {
            "agentId": agent_id,
            "entries": [
                {
                    **line.meta,  # as sent (repo, issueNumber, ...); our fields win
                    "ts": line.ts,
                    "level": line.level,
                    "message": line.message,
                    "receivedAt": line.received_at,
                }
                for line in lines
            ],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_routes(routes)
