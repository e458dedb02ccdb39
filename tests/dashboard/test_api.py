"""The dashboard's data endpoints on a real PostgreSQL: board, agents, spend, runs, health."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from bot.context import AppContext
from bot.services.costs.pricing import DATABASE_SOURCE
from bot.wiring import Services
from store.catalogue import COORDINATION_STREAM, validate
from store.events import EventStore, NewEvent
from store.projections import Projections
from tests.dashboard.conftest import (
    DashboardFactory,
    UsageWriter,
    issue,
    load_issues,
    post_event,
    seed_board,
)
from tests.usage import record_usage_on


class Clock:
    """A clock the test moves; starts at the real time so the store's timestamps line up."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def get(client: TestClient, path: str) -> dict[str, Any]:
    response = await client.get(path)
    body = await response.json()
    assert response.status == 200, body
    return dict(body)


def columns(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["key"]: c for c in board["columns"]}


def streams(column: dict[str, Any]) -> list[str]:
    return [card["streamId"] for card in column["cards"]]


async def test_the_board_shows_each_issue_in_its_column(dashboard_factory: DashboardFactory):
    client = await dashboard_factory()
    await seed_board(client)

    board = await get(client, "/dashboard/api/board")

    assert [c["key"] for c in board["columns"]] == [
        "queued",
        "assigned",
        "in_progress",
        "in_review",
        "deploying",
        "done",
        "failed",
    ]
    by_key = columns(board)
    # The queue in priority order: critical before normal.
    assert streams(by_key["queued"]) == ["acme/app#6", "acme/app#1"]
    assert streams(by_key["assigned"]) == ["acme/app#2"]
    assert streams(by_key["in_progress"]) == ["acme/app#3"]
    assert streams(by_key["in_review"]) == ["acme/app#4"]
    assert streams(by_key["deploying"]) == ["acme/api#5"]
    assert by_key["done"]["cards"] == [] and by_key["failed"]["cards"] == []
    assert {k: c["total"] for k, c in by_key.items()} == {
        "queued": 2,
        "assigned": 1,
        "in_progress": 1,
        "in_review": 1,
        "deploying": 1,
        "done": 0,
        "failed": 0,
    }
    assert by_key["done"]["title"] == "Done today"

    login = by_key["assigned"]["cards"][0]
    assert login["title"] == "Fix the login"
    assert login["priority"] == "high"  # from the P1 label
    assert login["agent"] == "dev-e-1" and login["attempt"] == 1
    assert login["url"] == "https://github.com/acme/app/issues/2"
    assert login["stuck"] is False and login["stuckReason"] is None
    # In review, the card names the reviewer who holds it.
    review = by_key["in_review"]["cards"][0]
    assert review["agent"] == "review-e-1" and review["assignee"] == "dev-e-3"
    assert review["prNumber"] == 41
    assert datetime.fromisoformat(review["stateSince"]) <= datetime.fromisoformat(board["now"])


async def test_a_card_shows_its_last_runs_status(dashboard_factory: DashboardFactory):
    """The agent runtime's execution logs (stream-consumer.js): the newest run's status."""
    client = await dashboard_factory()
    await seed_board(client)
    create = {"repo": "acme/app", "issueNumber": 3, "agentId": "dev-e-2", "status": "running"}
    run_ids = []
    for _ in range(2):
        run = await client.post("/api/execution-logs", json={**create, "model": "m"})
        assert run.status == 201
        run_ids.append((await run.json())["id"])
    run_id = run_ids[-1]
    board = columns(await get(client, "/dashboard/api/board"))
    (card,) = board["in_progress"]["cards"]
    assert card["lastRun"]["status"] == "running"
    assert card["lastRun"]["id"] == run_id
    await client.post(f"/api/execution-logs/{run_id}/complete", json={"status": "failed"})
    board = columns(await get(client, "/dashboard/api/board"))
    (card,) = board["in_progress"]["cards"]
    assert (card["lastRun"]["status"], card["lastRun"]["agent"]) == ("failed", "dev-e-2")
    assert board["assigned"]["cards"][0]["lastRun"] is None


async def test_cards_are_marked_stuck_by_idle_time(
    dashboard_factory: DashboardFactory, make_context
):
    clock = Clock()
    # Heartbeats count for hours here, so only the idle-time rules can fire.
    context = make_context({"CONDUCTOR_HEARTBEAT_INTERVAL_SECONDS": "3600"}, clock=clock)
    client = await dashboard_factory(context=context)
    await seed_board(client)

    clock.offset = timedelta(minutes=21)  # past the review limit (20), not the work limit (30)
    by_key = columns(await get(client, "/dashboard/api/board"))
    assert [c["stuck"] for c in by_key["in_progress"]["cards"]] == [False]
    review = by_key["in_review"]["cards"][0]
    assert review["stuck"] is True
    assert review["stuckReason"] == (
        "no review event on acme/app#4 for 21 min (in_review, limit 20 min)"
    )
    assert by_key["in_review"]["stuck"] == 1

    clock.offset = timedelta(minutes=31)
    by_key = columns(await get(client, "/dashboard/api/board"))
    assert [c["stuck"] for c in by_key["in_progress"]["cards"]] == [True]
    assert [c["stuck"] for c in by_key["assigned"]["cards"]] == [True]
    # Queued and deploying issues are nobody's to be stuck on.
    assert not any(c["stuck"] for k in ("queued", "deploying") for c in by_key[k]["cards"])


async def test_cards_are_marked_stuck_when_their_agent_goes_silent(
    dashboard_factory: DashboardFactory, make_context
):
    clock = Clock()
    context = make_context(clock=clock)  # heartbeat every 60 s: stale after 3 minutes
    client = await dashboard_factory(context=context)
    await seed_board(client)
    clock.offset = timedelta(minutes=2)
    assert not any(
        card["stuck"]
        for column in (await get(client, "/dashboard/api/board"))["columns"]
        for card in column["cards"]
    )

    clock.offset = timedelta(minutes=5)  # every agent's last heartbeat is now 5 minutes old
    by_key = columns(await get(client, "/dashboard/api/board"))
    in_progress = by_key["in_progress"]["cards"][0]
    assert in_progress["stuck"] is True
    assert in_progress["stuckReason"].startswith("dev-e-2 stopped sending heartbeats 5 min ago")
    # In review it is the reviewer's silence that counts.
    assert by_key["in_review"]["cards"][0]["stuckReason"].startswith("review-e-1 stopped")
    # An agent that never sent a heartbeat is not judged by heartbeats.
    assert [c["agent"] for c in by_key["queued"]["cards"]] == [None, None]

    agents = {a["agentId"]: a for a in (await get(client, "/dashboard/api/agents"))["agents"]}
    assert all(a["stale"] for a in agents.values())
    assert agents["dev-e-2"]["status"] == "working"
    assert agents["dev-e-2"]["currentIssue"] is not None

    await post_event(client, issue("ISSUE_ASSIGNED", 1, agentId="dev-e-9"))
    by_key = columns(await get(client, "/dashboard/api/board"))
    fresh = [c for c in by_key["assigned"]["cards"] if c["agent"] == "dev-e-9"]
    assert [c["stuck"] for c in fresh] == [False]


async def test_done_shows_today_only_and_failed_shows_escalations(
    dashboard_factory: DashboardFactory, make_context
):
    clock = Clock()
    client = await dashboard_factory(context=make_context(clock=clock))
    await seed_board(client)
    await post_event(client, issue("ISSUE_DONE", 5, repo="acme/api"))
    await post_event(client, issue("ESCALATED", 3, reason="two attempts failed"))

    by_key = columns(await get(client, "/dashboard/api/board"))
    assert streams(by_key["done"]) == ["acme/api#5"]
    assert streams(by_key["failed"]) == ["acme/app#3"]
    assert by_key["failed"]["cards"][0]["escalated"] is True
    assert by_key["deploying"]["total"] == 0 and by_key["in_progress"]["total"] == 0

    clock.offset = timedelta(days=1)  # tomorrow: yesterday's done work leaves the column
    by_key = columns(await get(client, "/dashboard/api/board"))
    assert by_key["done"]["total"] == 0
    assert streams(by_key["failed"]) == ["acme/app#3"]


async def test_ten_thousand_issues_are_paged_with_counts(
    dashboard_factory: DashboardFactory, make_context, pool: asyncpg.Pool
):
    client = await dashboard_factory(context=make_context())
    await load_issues(pool, 10_000)
    # 2,500 of them in progress: more than one counting page of the service.
    await pool.execute(
        """
        SELECT conductor_append('bulk/repo#' || i, NULL, NULL,
               ARRAY['ISSUE_ASSIGNED', 'WORK_STARTED'],
               ARRAY[jsonb_build_object('repo', 'bulk/repo', 'issueNumber', i,
                                        'agentId', 'dev-e-' || (i % 7)),
                     jsonb_build_object('repo', 'bulk/repo', 'issueNumber', i,
                                        'agentId', 'dev-e-' || (i % 7))],
               ARRAY['{}'::jsonb, '{}'::jsonb])
        FROM generate_series(1, 2500) AS i
        """
    )

    by_key = columns(await get(client, "/dashboard/api/board"))
    assert by_key["queued"]["total"] == 7_500
    assert by_key["in_progress"]["total"] == 2_500
    assert len(by_key["queued"]["cards"]) == 25 and len(by_key["in_progress"]["cards"]) == 25

    seen: list[int] = []
    offset = 0
    while True:
        page = await get(client, f"/dashboard/api/board?state=queued&offset={offset}&limit=200")
        (column,) = page["columns"]
        assert column["total"] == 7_500 and column["offset"] == offset
        if not column["cards"]:
            break
        seen.extend(card["issueNumber"] for card in column["cards"])
        offset += len(column["cards"])
    # Every queued issue exactly once, in the queue's order (the board's first card first).
    assert sorted(seen) == list(range(2_501, 10_001))
    assert seen[:25] == [card["issueNumber"] for card in by_key["queued"]["cards"]]

    # A page across the service's 1,000-row counting page, and the last page.
    across = await get(client, "/dashboard/api/board?state=in_progress&offset=990&limit=20")
    assert len(across["columns"][0]["cards"]) == 20
    last = await get(client, "/dashboard/api/board?state=in_progress&offset=2490&limit=50")
    assert len(last["columns"][0]["cards"]) == 10
    beyond = await get(client, "/dashboard/api/board?state=in_progress&offset=9000")
    assert beyond["columns"][0]["cards"] == [] and beyond["columns"][0]["total"] == 2_500


async def test_board_parameters_are_checked(dashboard_factory: DashboardFactory):
    client = await dashboard_factory()
    for query, field in (
        ("state=withdrawn", "state"),
        ("state=queued&offset=-1", "offset"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
    ):
        response = await client.get(f"/dashboard/api/board?{query}")
        body = await response.json()
        assert response.status == 400, (query, body)
        assert body["error"] == "invalid_request" and field in body["message"]


async def test_spend_per_agent_and_day_with_budgets(
    dashboard_factory: DashboardFactory, make_context, record_usage: UsageWriter
):
    today = datetime.now(UTC).date()
    await record_usage(today - timedelta(days=3), "dev-e-1", 2.5)
    await record_usage(today - timedelta(days=29), "dev-e-2", 1.0)
    await record_usage(today - timedelta(days=30), "dev-e-2", 99.0)  # outside the 30 days
    context = make_context({"CONDUCTOR_AGENT_BUDGETS_USD": "dev-e-1=1.5,review-e-1=3"})
    client = await dashboard_factory(context=context)
    for cost in (1.0, 0.75):
        await post_event(
            client,
            {
                "type": "TOKEN_USAGE",
                "agentId": "dev-e-1",
                "model": "claude-haiku-4-5",
                "inputTokens": round(cost * 1_000_000),  # $1 per million: priced at `cost`
                "outputTokens": 0,
                "costUsd": cost / 4,
            },
        )

    spend = await get(client, "/dashboard/api/spend")

    assert len(spend["days"]) == 30
    assert spend["days"][0] == (today - timedelta(days=29)).isoformat()
    assert spend["days"][-1] == today.isoformat()
    agents = {a["agentId"]: a for a in spend["agents"]}
    assert list(agents) == ["dev-e-1", "dev-e-2", "review-e-1"]  # most spent first
    dev1 = agents["dev-e-1"]
    assert dev1["todayUsd"] == 1.75 and dev1["totalUsd"] == 4.25
    assert dev1["dailyUsd"][-4] == 2.5 and dev1["dailyUsd"][-1] == 1.75
    assert dev1["budgetUsd"] == 1.5 and dev1["overBudget"] is True
    assert agents["dev-e-2"]["dailyUsd"][0] == 1.0 and agents["dev-e-2"]["totalUsd"] == 1.0
    assert agents["dev-e-2"]["budgetUsd"] is None
    # A budget with no spend yet still shows, at zero.
    assert agents["review-e-1"]["totalUsd"] == 0 and agents["review-e-1"]["budgetUsd"] == 3
    assert spend["todayUsd"] == 1.75 and spend["totalUsd"] == 5.25
    # Our price, not the agents' (4x too low) report, and how far their figure is from ours.
    assert dev1["basis"] == "priced"
    (model,) = dev1["models"]
    assert model["model"] == "claude-haiku-4-5"
    assert model["costUsd"] == 4.25 and model["reportedUsd"] == 1.0625
    assert model["differencePct"] == -75.0 and model["mismatch"] is True


async def test_spend_is_the_ledger_of_cost_summary_for_the_same_window(
    dashboard_factory: DashboardFactory, make_context, pool: asyncpg.Pool
):
    today = datetime.now(UTC).date()
    # A Sonnet 4.6 turn of 1,000,000 in and 100,000 out costs $4.50 (reported 0 by the agent).
    await record_usage_on(
        pool,
        today,
        "dev-e-1",
        "claude-sonnet-4-6",
        inputTokens=1_000_000,
        outputTokens=100_000,
        costUsd=0.0,
        repo="acme/app",
        issueNumber=7,
    )
    # The runtime's turn with no model and no issue: counted, priced from its report, labelled.
    await record_usage_on(
        pool,
        today,
        "dev-e-2",
        "",
        raw=True,
        inputTokens=500,
        outputTokens=50,
        costUsd=0.02,
        repo="",
        issueNumber=0,
    )
    client = await dashboard_factory(context=make_context())

    spend = await get(client, "/dashboard/api/spend")
    summary = await get(client, "/api/costs/summary?days=30")

    agents = {a["agentId"]: a for a in spend["agents"]}
    assert agents["dev-e-1"]["totalUsd"] == agents["dev-e-1"]["todayUsd"] == 4.5
    assert agents["dev-e-1"]["basis"] == "priced"
    (sonnet,) = agents["dev-e-1"]["models"]
    assert sonnet["reportedUsd"] == 0 and sonnet["differencePct"] == -100.0
    assert agents["dev-e-2"]["totalUsd"] == 0.02 and agents["dev-e-2"]["basis"] == "reported"
    (unknown,) = agents["dev-e-2"]["models"]
    assert unknown["model"] == "" and unknown["unpricedModel"] is True
    assert unknown["tokens"]["total"] == 550
    # The same numbers, agent for agent, as /api/costs/summary (and so /cost summary).
    assert {a["agentId"]: a["costUsd"] for a in summary["byAgent"]} == {
        a: agents[a]["totalUsd"] for a in ("dev-e-1", "dev-e-2")
    }
    assert spend["totalUsd"] == summary["total"]["costUsd"] == 4.52
    assert spend["priceSources"] == summary["priceSources"] == [DATABASE_SOURCE]
    assert [(i["streamId"], i["unattributed"], i["costUsd"]) for i in summary["topIssues"]] == [
        ("acme/app#7", False, 4.5),
        ("", True, 0.02),
    ]


async def test_the_latest_coordination_runs(dashboard_factory: DashboardFactory, store: EventStore):
    client = await dashboard_factory()
    assert (await get(client, "/dashboard/api/runs"))["runs"] == []
    runs: list[tuple[str, dict[str, Any]]] = [
        (
            "COORDINATION_RUN_COMPLETED",
            {"durationMs": 1234, "approved": ["a/b#1", "a/b#2"], "appended": 3, "errors": []},
        ),
        ("COORDINATION_RUN_FAILED", {"durationMs": 50, "errors": ["github: HTTP 502"]}),
        ("COORDINATION_RUN_FAILED", {"error": "PostgreSQL is unavailable", "odd": {"x": 1}}),
    ]
    for kind, data in runs:
        await store.append(
            COORDINATION_STREAM, [NewEvent(kind, validate(kind, data, internal=True))]
        )

    found = (await get(client, "/dashboard/api/runs?limit=2"))["runs"]
    assert [r["outcome"] for r in found] == ["failed", "failed"]
    assert found[0]["fields"] == {} and found[0]["errors"] == ["PostgreSQL is unavailable"]
    assert found[1]["fields"] == {"durationMs": 50}
    assert found[1]["errors"] == ["github: HTTP 502"]

    oldest = (await get(client, "/dashboard/api/runs"))["runs"][-1]
    assert oldest["outcome"] == "completed"
    assert oldest["fields"] == {"durationMs": 1234, "approved": 2, "appended": 3}
    assert oldest["errors"] == []


async def test_health_lists_each_dependency(dashboard_factory: DashboardFactory):
    client = await dashboard_factory()
    body = await get(client, "/dashboard/api/health")
    assert body["status"] == "healthy"
    (postgres,) = body["components"]
    assert postgres["name"] == "postgres" and postgres["status"] == "up"
    assert postgres["critical"] is True


async def test_the_page_and_its_files_are_served(dashboard_factory: DashboardFactory):
    client = await dashboard_factory()
    response = await client.get("/")
    page = await response.text()
    assert response.status == 200 and response.content_type == "text/html"
    assert 'src="dashboard/static/dashboard.js"' in page
    for name, kind in (
        ("dashboard.js", "javascript"),
        ("dashboard.css", "text/css"),
    ):
        response = await client.get(f"/dashboard/static/{name}")
        assert response.status == 200, name
        assert kind in response.content_type
    # Nothing on the page comes from another host.
    assert "http://" not in page and "https://" not in page


def with_token(make_context: Callable[..., AppContext], token: str) -> AppContext:
    """A context whose settings carry the dashboard token (CONDUCTOR_DASHBOARD_TOKEN)."""
    return make_context({"CONDUCTOR_DASHBOARD_TOKEN": token})


async def test_with_a_token_everything_but_static_files_needs_it(
    dashboard_factory: DashboardFactory, make_context
):
    token = "s3cret-dashboard-token-0123"
    client = await dashboard_factory(context=with_token(make_context, token))
    data_paths = [
        "/dashboard/api/board",
        "/dashboard/api/agents",
        "/dashboard/api/spend",
        "/dashboard/api/runs",
        "/dashboard/api/health",
        "/dashboard/events",
    ]
    for path in data_paths:
        response = await client.get(path)
        body = await response.json()
        assert response.status == 401, path
        assert body["error"] == "unauthorized"
        assert token not in body["message"]
        wrong = await client.get(path, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status == 401, path
    for path in data_paths[:-1]:
        assert (await client.get(path, headers={"Authorization": f"Bearer {token}"})).status == 200
        assert (await client.get(f"{path}?token={token}")).status == 200

    # The page shows a login form instead of the dashboard.
    response = await client.get("/")
    assert response.status == 401
    assert '<form method="post" action="dashboard/login"' in await response.text()
    assert (await client.get("/dashboard/static/dashboard.js")).status == 200

    # A wrong token at the form: the form again, no cookie.
    response = await client.post("/dashboard/login", data={"token": "nope"})
    assert response.status == 401 and "not valid" in await response.text()
    assert not client.session.cookie_jar.filter_cookies(client.make_url("/"))

    # The right one: a cookie (not the token itself) and back to the page.
    response = await client.post("/dashboard/login", data={"token": token}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "../"
    cookie = response.cookies["conductor_dashboard"]
    assert cookie.value and token not in cookie.value
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert (await client.get("/")).status == 200
    assert (await client.get("/dashboard/api/board")).status == 200


async def test_a_token_in_the_address_becomes_the_cookie(
    dashboard_factory: DashboardFactory, make_context
):
    token = "another-dashboard-token-42"
    client = await dashboard_factory(context=with_token(make_context, token))
    assert (await client.get("/?token=wrong")).status == 401
    response = await client.get(f"/?token={token}", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "./"
    assert "conductor_dashboard" in response.cookies
    assert (await client.get("/dashboard/api/agents")).status == 200


async def test_without_a_token_the_dashboard_is_open(dashboard_factory: DashboardFactory):
    client = await dashboard_factory()
    assert (await client.get("/")).status == 200
    assert (await client.get("/dashboard/api/board")).status == 200
    # The login form's target just goes back to the page.
    response = await client.post("/dashboard/login", data={}, allow_redirects=False)
    assert response.status == 303


async def test_the_board_is_one_moment_even_while_an_issue_moves(
    context: AppContext, monkeypatch: Any
) -> None:
    """The board's columns and counts are read in one snapshot: an issue that moves while the
    board is being read is in one column only, the one it was in when the read began."""
    store = context.store
    stream = "acme/app#2"
    data = {"repo": "acme/app", "issueNumber": 2}
    await store.append(stream, [NewEvent("ISSUE_APPROVED", {**data, "title": "Fix the login"})])
    await store.append(stream, [NewEvent("ISSUE_ASSIGNED", {**data, "agentId": "dev-e-1"})])
    original = Projections.issues
    moved: list[int] = []

    async def issues_while_it_moves(self: Projections, *args: Any, **kwargs: Any) -> Any:
        if not moved:  # between reading the first column and the next: the agent starts
            result = await store.append(
                stream, [NewEvent("WORK_STARTED", {**data, "agentId": "dev-e-1"})]
            )
            moved.append(result.last_position)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Projections, "issues", issues_while_it_moves)
    board = await Services.build(context).dashboard.board()

    assert moved, "the issue moved during the read"
    where = {c.key: [card.issue.stream_id for card in c.cards] for c in board.columns}
    totals = {c.key: c.total for c in board.columns}
    assert where["assigned"] == [stream] and where["in_progress"] == []
    assert totals["assigned"] == 1 and totals["in_progress"] == 0
    monkeypatch.undo()
    after = await Services.build(context).dashboard.board()
    assert {c.key: c.total for c in after.columns}["in_progress"] == 1
