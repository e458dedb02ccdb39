"""The dashboard in a real headless Chromium: it shows the board and follows events live.

Two servers: the app in-process (create_app + the dashboard routes on an aiohttp TestServer),
and the real `conductor-e run` process on its embedded PostgreSQL. Both are driven only over
HTTP, as an operator's browser and the agents would.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.web.app import create_app
from bot.wiring import Services
from store.catalogue import COORDINATION_STREAM, validate
from store.events import EventStore, NewEvent
from tests.dashboard.conftest import (
    ARTIFACTS,
    DashboardFactory,
    UsageWriter,
    issue,
    post_event,
    seed_board,
)
from tests.test_cli import clean_environment, free_port, spawn, stop, wait_until_up

pytestmark = pytest.mark.slow

MOVE_WITHIN_MS = 2_000

EXPECTED = {
    "queued": ["acme/app#6", "acme/app#1"],
    "assigned": ["acme/app#2"],
    "in_progress": ["acme/app#3"],
    "in_review": ["acme/app#4"],
    "deploying": ["acme/api#5"],
}


async def column_streams(page: Any, key: str) -> list[str]:
    return list(
        await page.eval_on_selector_all(
            f'.column[data-column="{key}"] .card', "cards => cards.map(c => c.dataset.stream)"
        )
    )


async def watch_the_board_move(page: Any, base: str, client: Any) -> None:
    """Open the dashboard, check the seeded board, post an event, see the card move."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "warning")
            else None
        ),
    )
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(base) else foreign.append(r.url))
    navigations: list[str] = []

    await page.goto(f"{base}/")
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    await page.wait_for_selector('.column[data-column="deploying"] .card', timeout=10_000)
    for key, expected in EXPECTED.items():
        assert await column_streams(page, key) == expected, key
    assert await page.inner_text('.column[data-column="queued"] .count') == "2"
    card = page.locator('.card[data-stream="acme/app#2"]')
    assert "Fix the login" in await card.inner_text()
    assert "dev-e-1" in await card.inner_text()
    assert await card.locator("a").get_attribute("href") == "https://github.com/acme/app/issues/2"
    await page.wait_for_selector('tr[data-agent="dev-e-2"]', timeout=5_000)
    await page.wait_for_selector('.spend-row[data-agent="dev-e-1"] svg rect.today', timeout=5_000)
    await page.wait_for_selector('.live[data-state="live"]', timeout=10_000)

    loaded_at = await page.evaluate("window.__dashboard.loadedAt")
    url = page.url
    started = time.monotonic()
    await post_event(client, issue("WORK_STARTED", 2, agentId="dev-e-1", branch="fix-login"))
    await page.wait_for_selector(
        '.column[data-column="in_progress"] .card[data-stream="acme/app#2"]',
        timeout=MOVE_WITHIN_MS,
    )
    moved_ms = (time.monotonic() - started) * 1000
    assert moved_ms < MOVE_WITHIN_MS
    assert await column_streams(page, "assigned") == []
    # The board reads its counts and its cards in separate statements: a board read while the
    # event commits can show the moved card beside the old count, until the next read.
    await page.wait_for_function(
        "() => document.querySelector('.column[data-column=\"in_progress\"] .count')"
        ".textContent === '2'",
        timeout=MOVE_WITHIN_MS,
    )
    # The agent runtime's execution log (stream-consumer.js): the card shows its last run, live.
    run = {"repo": "acme/app", "issueNumber": 2, "agentId": "dev-e-1", "status": "running"}
    created = await client.post("/api/execution-logs", json=run)
    run_id = json.loads(await created.text())["id"]
    await page.wait_for_selector('.card[data-stream="acme/app#2"] .run', timeout=MOVE_WITHIN_MS)
    done = await client.post(f"/api/execution-logs/{run_id}/complete", json={"status": "failed"})
    assert done.status == 200
    badge = '.card[data-stream="acme/app#2"] .run.bad'
    await page.wait_for_selector(badge, timeout=MOVE_WITHIN_MS)
    assert await page.inner_text(badge) == "run failed"
    # The same page: no navigation, no reload.
    assert navigations == [] and page.url == url
    assert await page.evaluate("window.__dashboard.loadedAt") == loaded_at
    assert problems == []
    assert foreign == []  # nothing from a CDN or any other host


async def test_the_dashboard_in_a_browser_in_process(
    dashboard_factory: DashboardFactory,
    make_context,
    browser: Any,
    store: EventStore,
    record_usage: UsageWriter,
):
    context = make_context(
        {
            "CONDUCTOR_AGENT_BUDGETS_USD": "dev-e-1=2.5,dev-e-2=1.5",
            "CONDUCTOR_STUCK_IN_REVIEW_MINUTES": "0.001",  # the review card shows as stuck
        }
    )
    client = await dashboard_factory(context=context)
    await seed_board(client)
    # A fuller picture for the screenshot: a month of spend, runs, done and failed work.
    today = datetime.now(UTC).date()
    for back in range(1, 30):
        day = today - timedelta(days=back)
        await record_usage(day, "dev-e-1", round(1.2 + (back * 7 % 11) / 8, 2))
        if back % 3:
            await record_usage(day, "dev-e-2", round(0.4 + (back * 5 % 7) / 9, 2))
        if back % 2:
            await record_usage(day, "review-e-1", round(0.1 + (back % 4) / 10, 2))
    # review-e-2's Sonnet 4.6 turn today, which its runtime reported at $0: $4.50 by our price.
    await post_event(
        client,
        {
            "type": "TOKEN_USAGE",
            "agentId": "review-e-2",
            "model": "claude-sonnet-4-6",
            "inputTokens": 1_000_000,
            "outputTokens": 100_000,
            "costUsd": 0,
        },
    )
    for number, title in ((11, "Bump the base image"), (12, "Flaky payments test")):
        await post_event(client, issue("ISSUE_APPROVED", number, title=title))
        await post_event(client, issue("ISSUE_ASSIGNED", number, agentId="dev-e-2"))
    await post_event(client, issue("ISSUE_DONE", 11))
    await post_event(client, issue("ESCALATED", 12, reason="two attempts failed"))
    for kind, data in (
        ("COORDINATION_RUN_FAILED", {"durationMs": 3100, "errors": ["github: HTTP 502"]}),
        (
            "COORDINATION_RUN_COMPLETED",
            {"durationMs": 1840, "approved": ["acme/app#6"], "queueDepth": 2, "appended": 4},
        ),
    ):
        await store.append(
            COORDINATION_STREAM, [NewEvent(kind, validate(kind, data, internal=True))]
        )

    page = await browser.new_page()
    base = str(client.make_url("")).rstrip("/")
    await watch_the_board_move(page, base, client)

    assert await column_streams(page, "done") == ["acme/app#11"]
    assert await column_streams(page, "failed") == ["acme/app#12"]
    stuck = page.locator('.column[data-column="in_review"] .card.stuck')
    assert "stuck" in await stuck.inner_text()
    assert await page.locator(".runs li").count() == 2
    assert await page.locator('.health li[data-component="postgres"].up').count() == 1
    assert await page.locator(".spend .budget").count() == 2
    sonnet = page.locator('.spend-row[data-agent="review-e-2"]')
    assert "$4.50 today" in await sonnet.locator(".spend-label").inner_text()
    line = await sonnet.locator('.spend-models li[data-model="claude-sonnet-4-6"]').inner_text()
    assert line == "claude-sonnet-4-6 $4.50 priced · reported $0.00 (-100.0%)"
    assert "priced by genai-prices" in await page.inner_text("#spend-totals")

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


@pytest.fixture
def conductor_process(tmp_path: Path, make_context) -> Iterator[str]:
    """The real `conductor-e run` on the embedded PostgreSQL; yields its base URL."""
    if not dashboard_is_wired(make_context):
        pytest.skip("bot.web.app.create_app does not call dashboard.add_routes(app) yet")
    os.chmod(tmp_path, 0o755)  # the embedded server runs as its own user when we are root
    env = clean_environment()
    env.update(
        CONDUCTOR_DATA_DIR=str(tmp_path / "data"),
        CONDUCTOR_HTTP_HOST="127.0.0.1",
        CONDUCTOR_HTTP_PORT=str(free_port()),
    )
    process = spawn(["run"], env)
    base = f"http://127.0.0.1:{env['CONDUCTOR_HTTP_PORT']}"
    try:
        wait_until_up(base, process)
        yield base
    finally:
        code, log = stop(process)
        assert code == 0, log


def dashboard_is_wired(make_context) -> bool:
    app = create_app(Services.build(make_context()))
    return any(r.resource is not None and r.resource.canonical == "/" for r in app.router.routes())


async def test_the_dashboard_in_a_browser_against_conductor_e_run(
    browser: Any, conductor_process: str
):
    base = conductor_process
    async with aiohttp.ClientSession(base_url=base) as client:
        await seed_board(client)
        page = await browser.new_page()
        await watch_the_board_move(page, base, client)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-process.png"), full_page=True)
        await page.close()
