"""Fixtures for the dashboard: the API app with the dashboard routes, seeding, a real browser."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.context import AppContext
from bot.web import dashboard
from bot.web.app import create_app
from bot.wiring import Services
from tests.usage import record_usage_on

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

DashboardFactory = Callable[..., Awaitable[TestClient]]


def dashboard_app(context: AppContext, **options: Any) -> Any:
    """The API application with the dashboard added, as `create_app` will do once wired."""
    app = create_app(Services.build(context))
    if not any(
        route.resource is not None and route.resource.canonical == "/dashboard/events"
        for route in app.router.routes()
    ):
        dashboard.add_routes(app, **options)
    elif options:
        raise AssertionError("create_app already adds the dashboard; pass settings instead")
    return app


@pytest.fixture
async def dashboard_factory(
    make_context: Callable[..., AppContext],
) -> AsyncIterator[DashboardFactory]:
    """Serve the API plus the dashboard on 127.0.0.1 for a context built from `env`."""
    clients: list[TestClient] = []

    async def start(
        env: dict[str, str] | None = None, *, context: AppContext | None = None, **options: Any
    ) -> TestClient:
        ctx = context or make_context(env)
        client = TestClient(TestServer(dashboard_app(ctx, **options), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def post_event(client: Any, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    """POST /api/events as an agent does (a TestClient or a ClientSession with a base_url);
    fails the test on anything but 200."""
    response = await client.post("/api/events", json=body, headers=headers)
    text = await response.text()
    assert response.status == 200, text
    return dict(json.loads(text))


def issue(kind: str, number: int, repo: str = "acme/app", **fields: Any) -> dict[str, Any]:
    return {"type": kind, "repo": repo, "issueNumber": number, **fields}


async def seed_board(client: Any) -> None:
    """A small board: one issue in each column but done/failed, three agents, some spend."""
    await post_event(client, issue("ISSUE_APPROVED", 1, title="Tidy the README"))
    await post_event(
        client, issue("ISSUE_APPROVED", 2, title="Fix the login", labels=["agent-ready", "P1"])
    )
    await post_event(client, issue("ISSUE_APPROVED", 3, title="Add rate limits", priority="high"))
    await post_event(client, issue("ISSUE_APPROVED", 4, title="Cache the search results"))
    await post_event(
        client, issue("ISSUE_APPROVED", 5, repo="acme/api", title="Ship the v2 endpoint")
    )
    await post_event(
        client, issue("ISSUE_APPROVED", 6, title="Crash on empty cart", priority="critical")
    )
    await post_event(client, issue("ISSUE_ASSIGNED", 2, agentId="dev-e-1"))
    await post_event(client, issue("ISSUE_ASSIGNED", 3, agentId="dev-e-2"))
    await post_event(client, issue("WORK_STARTED", 3, agentId="dev-e-2", branch="rate-limits"))
    await post_event(client, issue("ISSUE_ASSIGNED", 4, agentId="dev-e-3"))
    await post_event(client, issue("PR_CREATED", 4, agentId="dev-e-3", prNumber=41))
    await post_event(client, issue("REVIEW_ASSIGNED", 4, agentId="review-e-1", prNumber=41))
    await post_event(client, issue("ISSUE_ASSIGNED", 5, repo="acme/api", agentId="dev-e-3"))
    await post_event(client, issue("MERGED", 5, repo="acme/api", prNumber=7))
    await post_event(client, issue("DEPLOYED_STAGING", 5, repo="acme/api"))
    for agent, status, current in (
        ("dev-e-1", "working", 2),
        ("dev-e-2", "working", 3),
        ("dev-e-3", "idle", None),
        ("review-e-1", "reviewing", 4),
    ):
        beat: dict[str, Any] = {"type": "HEARTBEAT", "agentId": agent, "status": status}
        if current is not None:
            beat.update(currentIssue=current, currentRepo="acme/app")
        await post_event(client, beat)
    for agent, cost in (("dev-e-1", 1.84), ("dev-e-2", 0.62), ("review-e-1", 0.21)):
        await post_event(
            client,
            {
                "type": "TOKEN_USAGE",
                "agentId": agent,
                "model": "claude-haiku-4-5",
                "inputTokens": 120_000,
                "outputTokens": 9_000,
                "costUsd": cost,
                "repo": "acme/app",
            },
        )


UsageWriter = Callable[..., Awaitable[None]]


@pytest.fixture
def record_usage(pool: asyncpg.Pool) -> UsageWriter:
    """Record one TOKEN_USAGE costing `cost` USD on a past day, projected by the store's own
    function.

    Appends stamp events with the server's clock, so to put spend on earlier days the event row
    is inserted with its recorded_at and projected with conductor_project, as an append does.
    """

    async def write(day: date, agent: str, cost: float) -> None:
        # Haiku 4.5 input at $1 per million tokens: priced at exactly `cost`. The agent reports
        # a quarter of it, as the runtime's stale price list does: the dashboard shows ours.
        await record_usage_on(
            pool, day, agent, inputTokens=round(cost * 1_000_000), costUsd=cost / 4
        )

    return write


async def load_issues(pool: asyncpg.Pool, count: int, repo: str = "bulk/repo") -> None:
    """Queue `count` issues through conductor_append (the real append path), in bulk."""
    step = 2_000
    for start in range(1, count + 1, step):
        await pool.execute(
            """
            SELECT conductor_append($1 || '#' || i, 0, NULL, ARRAY['ISSUE_APPROVED'],
                   ARRAY[jsonb_build_object('repo', $1::text, 'issueNumber', i,
                                            'title', 'bulk issue ' || i)],
                   ARRAY['{}'::jsonb])
            FROM generate_series($2::int, $3::int) AS i
            """,
            repo,
            start,
            min(start + step - 1, count),
        )


# --- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed by scripts/install_browser.sh when it is missing."""
    if not CHROMIUM.exists():
        result = subprocess.run(
            ["sh", str(ROOT / "scripts" / "install_browser.sh")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
    assert CHROMIUM.exists(), f"{CHROMIUM} is still missing after install_browser.sh"
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Any]:
    """A headless Chromium (fresh profile) driven by Playwright's async API."""
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="dashboard-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(chromium),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1600, "height": 1000},
                env={**os.environ, "TZ": "UTC"},
            )
            try:
                yield context
            finally:
                await context.close()
