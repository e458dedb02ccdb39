"""The dashboard's data as JSON under /dashboard/api: the board, agents, spend, runs, health.

Each handler reads one DashboardService call (bot/services/dashboard) and shapes it for the
page's script; nothing here writes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.errors import InvalidInput
from bot.services.dashboard import (
    COLUMN_KEYS,
    DEFAULT_PAGE,
    MAX_PAGE,
    Board,
    Card,
    Run,
    Spend,
    issue_url,
)
from bot.web.api import agent_json, int_param, json_response
from bot.web.dashboard.access import require_access
from bot.web.keys import CONTEXT, SERVICES
from store.projections import ExecutionLog


def card_json(card: Card, github_api_url: str) -> dict[str, Any]:
    issue = card.issue
    return {
        "streamId": issue.stream_id,
        "repo": issue.repo,
        "issueNumber": issue.number,
        "title": issue.title,
        "url": issue_url(issue, github_api_url),
        "priority": issue.priority,
        "state": issue.state,
        "agent": card.agent,
        "assignee": issue.assignee,
        "reviewer": issue.reviewer,
        "attempt": issue.attempt,
        "prNumber": issue.pr_number,
        "escalated": issue.escalated,
        "humanGate": issue.human_gate,
        "held": issue.held,
        "heldBy": issue.held_by,
        "heldReason": issue.held_reason,
        "stateSince": issue.state_since,
        "lastActivity": issue.last_activity,
        "stuck": card.stuck,
        "stuckReason": card.stuck_reason,
        "unroutable": card.unroutable,
        "route": card.route,
        "gate": card.gate,
        "lastRun": None if card.last_run is None else last_run_json(card.last_run),
    }


def last_run_json(run: ExecutionLog) -> dict[str, Any]:
    """What a card says of the agent runtime's last run on its issue."""
    return {
        "id": run.id,
        "status": run.status,
        "agent": run.agent_id,
        "model": run.model,
        "steps": len(run.steps),
        "startedAt": run.started_at,
        "completedAt": run.completed_at,
        "prNumber": run.pr_number,
    }


def board_json(board: Board, github_api_url: str, limit: int) -> dict[str, Any]:
    return {
        "now": board.now,
        "columns": [
            {
                "key": column.key,
                "title": column.title,
                "total": column.total,
                "offset": column.offset,
                "limit": limit,
                "stuck": column.stuck,
                "unroutable": column.unroutable,
                "cards": [card_json(card, github_api_url) for card in column.cards],
            }
            for column in board.columns
        ],
        "brokenConfigs": [{"repo": repo, "error": error} for repo, error in board.broken_configs],
    }


async def board(request: web.Request) -> web.Response:
    """Every column's first page; with `state=`, one column from `offset`."""
    require_access(request)
    service = request.app[SERVICES].dashboard
    limit = int_param(request, "limit", DEFAULT_PAGE, low=1, high=MAX_PAGE)
    state = request.query.get("state")
    if state:
        if state not in COLUMN_KEYS:
            raise InvalidInput(f"query parameter 'state' must be one of {', '.join(COLUMN_KEYS)}")
        offset = int_param(request, "offset", 0, low=0, high=10_000_000)
        result = await service.column(state, offset, limit)
    else:
        result = await service.board(limit)
    return json_response(board_json(result, request.app[CONTEXT].settings.github_api_url, limit))


async def agents(request: web.Request) -> web.Response:
    require_access(request)
    context = request.app[CONTEXT]
    now, found = await request.app[SERVICES].dashboard.agents()
    return json_response(
        {
            "now": now,
            "staleAfterSeconds": context.stale_after.total_seconds(),
            "agents": [agent_json(a) for a in found],
        }
    )


def spend_json(spend: Spend) -> dict[str, Any]:
    return {
        "now": spend.now,
        "days": [day.isoformat() for day in spend.days],
        "todayUsd": spend.today_usd,
        "totalUsd": spend.total_usd,
        "priceSources": spend.price_sources,
        "agents": [
            {
                "agentId": a.agent_id,
                "dailyUsd": a.daily_usd,
                "todayUsd": a.today_usd,
                "totalUsd": a.total_usd,
                "budgetUsd": a.budget_usd,
                "overBudget": a.over_budget,
                "basis": a.spend.basis,
                "unpricedEvents": a.spend.unpriced_events,
                "models": [m.to_dict() for m in a.models],
            }
            for a in spend.agents
        ],
    }


async def spend(request: web.Request) -> web.Response:
    require_access(request)
    days = int_param(request, "days", 30, low=1, high=366)
    return json_response(spend_json(await request.app[SERVICES].dashboard.spend(days)))


def run_json(run: Run) -> dict[str, Any]:
    return {
        "position": run.position,
        "recordedAt": run.recorded_at,
        "outcome": "completed" if run.ok else "failed",
        "fields": run.fields,
        "errors": run.errors,
    }


async def runs(request: web.Request) -> web.Response:
    require_access(request)
    limit = int_param(request, "limit", 10, low=1, high=100)
    found = await request.app[SERVICES].dashboard.runs(limit)
    return json_response({"runs": [run_json(r) for r in found]})


async def health(request: web.Request) -> web.Response:
    """Each dependency's health; always 200, since the page shows a down one, not fails."""
    require_access(request)
    report = await request.app[SERVICES].health.check()
    return json_response(
        {
            "status": "healthy" if report.ok else "unhealthy",
            "now": request.app[CONTEXT].clock(),
            "components": [c.as_json() for c in report.components],
        }
    )
