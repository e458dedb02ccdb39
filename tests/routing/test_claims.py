"""Routing on the pull path: /api/assignments/next hands an agent only what it may take, the
claim stays exclusive, and /queue why, the board and the summary explain what waits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from bot.context import AppContext
from bot.services.coordination.result import RunResult
from bot.services.coordination.stuck import StuckReport
from bot.services.coordination.summary import template
from bot.services.work.routing import RoutingService, route_key
from bot.web.dashboard.routes import board_json
from bot.wiring import Services
from store import catalogue
from store.events import NewEvent

StartApi = Callable[[AppContext], Awaitable[TestClient]]


async def configure(context: AppContext, repo: str, config: dict[str, Any]) -> None:
    """Record a repo's .rig-agent.yaml as the reader would."""
    data = catalogue.validate(
        "REPO_CONFIG_CHANGED",
        {
            "repo": repo,
            "present": True,
            "sha": "a" * 40,
            "config": config,
            "routeKey": route_key(config),
        },
        internal=True,
    )
    await context.store.append(catalogue.repo_stream(repo), [NewEvent("REPO_CONFIG_CHANGED", data)])


async def break_config(context: AppContext, repo: str, error: str) -> None:
    data = catalogue.validate(
        "REPO_CONFIG_INVALID", {"repo": repo, "sha": "b" * 40, "error": error}, internal=True
    )
    await context.store.append(catalogue.repo_stream(repo), [NewEvent("REPO_CONFIG_INVALID", data)])


async def approve(api: TestClient, repo: str, number: int, **extra: object) -> None:
    body = {"type": "ISSUE_APPROVED", "repo": repo, "issueNumber": number, **extra}
    response = await api.post("/api/events", json=body)
    assert response.status == 200, await response.text()


async def take(api: TestClient, agent: str) -> str | None:
    response = await api.get(f"/api/assignments/next?agentId={agent}")
    if response.status == 204:
        return None
    assert response.status == 200, await response.text()
    return str((await response.json())["streamId"])


async def heartbeat(api: TestClient, agent: str, **extra: object) -> None:
    body = {"type": "HEARTBEAT", "agentId": agent, "status": "idle", **extra}
    assert (await api.post("/api/events", json=body)).status == 200


async def test_each_agent_gets_only_the_issues_routed_to_it(
    make_context: Callable[..., AppContext], api_client_factory: StartApi
) -> None:
    context = make_context()
    api = await api_client_factory(context)
    await configure(context, "acme/web", {"stack": "node"})
    await configure(context, "acme/ml", {"stack": "python"})
    await configure(context, "acme/ios", {"stack": "ios", "escalate": ["requires-macos"]})
    await approve(api, "acme/web", 1, priority="critical")
    await approve(api, "acme/ml", 2, priority="critical")
    await approve(api, "acme/ios", 3, priority="high")
    await approve(api, "acme/docs", 4)  # no .rig-agent.yaml

    assert await take(api, "dev-e-python") == "acme/ml#2"
    assert await take(api, "dev-e-python") == "acme/docs#4"  # no file: any agent
    assert await take(api, "dev-e-python") is None  # a node issue is not for it
    assert await take(api, "dev-e-ios") is None  # needs macOS
    assert await take(api, "ibuild-e") == "acme/ios#3"
    assert await take(api, "dev-e-node") == "acme/web#1"
    assert [
        e.data["agentId"] for e in await context.store.read_all(0, 100, types=["ISSUE_ASSIGNED"])
    ] == ["dev-e-python", "dev-e-python", "ibuild-e", "dev-e-node"]


async def test_with_no_routes_and_no_files_any_agent_takes_the_top_issue_as_before(
    context: AppContext, api: TestClient
) -> None:
    await approve(api, "acme/app", 1)
    await approve(api, "acme/app", 2, priority="high")
    assert await take(api, "dev-e-1") == "acme/app#2"
    assert await take(api, "anything-else") == "acme/app#1"


async def test_the_routes_setting_and_the_default_stack(
    make_context: Callable[..., AppContext], api_client_factory: StartApi
) -> None:
    context = make_context(
        {
            "CONDUCTOR_AGENT_ROUTES": "node=dev-e-node|dev-e-node-2,python=py-worker",
            "CONDUCTOR_DEFAULT_STACK": "python",
        }
    )
    api = await api_client_factory(context)
    await configure(context, "acme/web", {"stack": "node"})
    await approve(api, "acme/web", 1)
    await approve(api, "acme/docs", 2)  # no file: the default stack, python
    assert await take(api, "dev-e-python") is None  # the setting names python's agent
    assert await take(api, "dev-e-node-2") == "acme/web#1"  # either node agent may take it
    assert await take(api, "dev-e-node") is None  # the default stack is not node's
    assert await take(api, "py-worker") == "acme/docs#2"


async def test_agents_racing_on_one_route_each_get_a_different_issue_in_priority_order(
    make_context: Callable[..., AppContext], api_client_factory: StartApi
) -> None:
    agents = [f"node-{i}" for i in range(12)]
    context = make_context({"CONDUCTOR_AGENT_ROUTES": "node=" + "|".join(agents)})
    api = await api_client_factory(context)
    await configure(context, "acme/web", {"stack": "node"})
    await configure(context, "acme/ml", {"stack": "python"})
    for number in range(1, 6):
        await approve(api, "acme/web", number, priority="high" if number == 5 else "normal")
        await approve(api, "acme/ml", 100 + number, priority="critical")

    answers = await asyncio.gather(*(take(api, agent) for agent in agents))
    taken = [a for a in answers if a is not None]
    assert sorted(taken) == sorted(f"acme/web#{n}" for n in range(1, 6))  # each once
    assert answers.count(None) == 7
    assigned = await context.store.read_all(0, 200, types=["ISSUE_ASSIGNED"])
    assert assigned[0].stream_id == "acme/web#5"  # the high one went first
    queue = await context.projections.queue(limit=10)
    assert {i.repo for i in queue} == {"acme/ml"}  # nothing of python's was touched


async def test_queue_why_says_why_an_issue_waits(
    make_context: Callable[..., AppContext], api_client_factory: StartApi
) -> None:
    now = [datetime.now(UTC)]
    context = make_context(clock=lambda: now[0])
    api = await api_client_factory(context)
    queries = Services.build(context).queries
    await configure(context, "acme/ml", {"stack": "python"})
    await approve(api, "acme/ml", 1)

    route = await RoutingService(context).route("ACME/ml")
    assert (route.key, route.agents) == ("python", ("dev-e-python",))
    assert route.admits("dev-e-python") and not route.admits("dev-e-node")
    why = await queries.why("acme/ml#1")
    assert why.route is not None and why.route.agents == ("dev-e-python",)
    text = " ".join(why.reasons)
    assert "route 'python' from its .rig-agent.yaml (stack python) → dev-e-python" in text
    assert "No agent for its route: dev-e-python never reported" in text

    await heartbeat(api, "dev-e-python", status="working", currentIssue=9, currentRepo="acme/x")
    now[0] = datetime.now(UTC)
    text = " ".join((await queries.why("acme/ml#1")).reasons)
    assert "dev-e-python is busy with acme/x#9." in text

    now[0] = datetime.now(UTC) + timedelta(minutes=10)  # three missed heartbeats and more
    text = " ".join((await queries.why("acme/ml#1")).reasons)
    assert "dev-e-python is stale: no heartbeat for 10 min." in text

    await break_config(context, "acme/ml", "field 'stack': Field required")
    text = " ".join((await queries.why("acme/ml#1")).reasons)
    assert "Its .rig-agent.yaml is broken (field 'stack': Field required)" in text
    assert "the last good one (route 'python') still applies" in text


async def test_the_board_and_the_summary_flag_what_no_agent_can_take(
    make_context: Callable[..., AppContext], api_client_factory: StartApi
) -> None:
    context = make_context()
    api = await api_client_factory(context)
    await configure(context, "acme/ml", {"stack": "python"})
    await configure(context, "acme/web", {"stack": "node"})
    await break_config(context, "acme/web", "not valid YAML at line 3: mapping values")
    await approve(api, "acme/ml", 1)
    await approve(api, "acme/web", 2)
    await heartbeat(api, "dev-e-node")

    board = await Services.build(context).dashboard.board()
    payload = board_json(board, context.settings.github_api_url, 25)
    queued = next(c for c in payload["columns"] if c["key"] == "queued")
    flags = {c["streamId"]: c["unroutable"] for c in queued["cards"]}
    assert flags["acme/web#2"] is None  # dev-e-node has reported
    routes = {c["streamId"]: c["route"] for c in queued["cards"]}
    assert routes == {"acme/ml#1": "python → dev-e-python", "acme/web#2": "node → dev-e-node"}
    assert "dev-e-python never reported" in flags["acme/ml#1"]
    assert queued["unroutable"] == 1
    assert payload["brokenConfigs"] == [
        {"repo": "acme/web", "error": "not valid YAML at line 3: mapping values"}
    ]

    run = RunResult(run_id="r", started_at=context.clock())
    facts = await Services.build(context).coordination()._facts(run, StuckReport())
    assert run.unroutable == ["acme/ml#1"]
    text = template(facts)
    assert "🚫 No agent can take: acme/ml#1: No agent for its route" in text
    assert "🛠️ Broken .rig-agent.yaml: acme/web: not valid YAML at line 3" in text


async def test_an_agent_with_routed_and_unrouted_work_takes_it_in_priority_order(
    make_context: Callable[..., AppContext], api_client_factory: StartApi
) -> None:
    context = make_context()
    api = await api_client_factory(context)
    await configure(context, "acme/web", {"stack": "node"})
    await configure(context, "acme/site", {"stack": "node"})
    await configure(context, "acme/ml", {"stack": "python"})
    await approve(api, "acme/web", 1)
    await approve(api, "acme/docs", 2, priority="high")  # no file
    await approve(api, "acme/ml", 3, priority="critical")  # not node's
    await approve(api, "acme/site", 4, priority="high")
    await approve(api, "acme/web", 5, priority="high")
    taken = [await take(api, "dev-e-node") for _ in range(5)]
    assert taken == ["acme/docs#2", "acme/site#4", "acme/web#5", "acme/web#1", None]
