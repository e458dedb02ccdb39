"""Steering (issue 17) through the service and the HTTP API, against the fake GitHub (the real
gidgethub client) and the real PostgreSQL: the label goes first, then the event; the claim obeys
holds, pauses and requeues; the sync agrees with what a person did."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from bot.context import AppContext
from bot.errors import Conflict, UpstreamError
from bot.integrations.github import GitHubClient
from bot.services.coordination.summary import Facts, template
from bot.services.github.sync import SyncService
from bot.services.intake.events import Actor
from bot.services.work.routing import RoutingService
from bot.services.work.steering import SteeringService
from bot.wiring import Services
from store import catalogue
from store.events import NewEvent
from tests.fakes.github import FakeGitHub

READY = "agent-ready"
REPOS = "acme/api"
ACTOR = "discord:42"
STEER_TOKEN = "steer-token-0123456789"
AGENT = Actor(name=None, authenticated=False)


async def events_of(context: AppContext, *types: str) -> list:
    return await context.store.read_all(0, 100_000, types=list(types) or None)


def steering(
    github_context: Callable[..., AppContext], make_client: Callable[..., GitHubClient], **env: str
) -> tuple[AppContext, SteeringService]:
    context = github_context(CONDUCTOR_MANAGED_REPOS=REPOS, **env)
    return context, SteeringService(
        context, RoutingService(context), github=make_client(context.settings)
    )


async def approved(context: AppContext, fake: FakeGitHub, number: int, **kw: str) -> None:
    fake.add_issue("acme/api", number, labels=[READY])
    payload = {"repo": "acme/api", "issueNumber": number, "labels": [READY], **kw}
    data = catalogue.validate("ISSUE_APPROVED", payload, internal=True)
    await context.store.append(f"acme/api#{number}", [NewEvent("ISSUE_APPROVED", data)])


async def claim(context: AppContext, agent: str) -> str | None:
    issue = await Services.build(context).events.claim("issue", agent, AGENT)
    return None if issue is None else issue.stream_id


async def test_hold_labels_github_then_records_and_the_claim_skips_it(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    context, service = steering(github_context, make_client)
    await approved(context, fake, 1)

    done = await service.hold("acme/api#1", ACTOR, "waiting for the design review")

    assert "hold" in [label["name"] for label in fake.issue("acme/api", 1)["labels"]]
    (held,) = await events_of(context, "ISSUE_HELD")
    assert held.position == done.position
    assert held.metadata["actor"] == ACTOR
    assert held.data["reason"] == "waiting for the design review"
    issue = await context.projections.issue("acme/api#1")
    assert issue is not None and issue.held and issue.held_by == ACTOR
    assert issue.held_reason == "waiting for the design review"
    assert await claim(context, "dev-e-1") is None  # 204: held issues are never handed out
    # The sync reads the hold label too, and agrees: nothing recorded.
    result = await SyncService(context, make_client(context.settings)).run()
    assert not result.changed, result
    # An audit trail with the actor.
    trail = await events_of(context, "ADMIN_ACTION_REQUESTED", "ADMIN_ACTION_COMPLETED")
    assert [(e.type, e.data["actor"], e.data["action"]) for e in trail] == [
        ("ADMIN_ACTION_REQUESTED", ACTOR, "issue hold"),
        ("ADMIN_ACTION_COMPLETED", ACTOR, "issue hold"),
    ]

    await service.unhold("acme/api#1", ACTOR)
    assert "hold" not in [label["name"] for label in fake.issue("acme/api", 1)["labels"]]
    assert await claim(context, "dev-e-1") == "acme/api#1"
    with pytest.raises(Conflict):
        await service.unhold("acme/api#1", ACTOR)


async def test_github_answering_500_leaves_nothing_half_done(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    context, service = steering(github_context, make_client)
    await approved(context, fake, 1)
    before = await context.store.head_position()
    fake.fail(500, times=10, path="/repos/acme/api/issues/1/labels")

    with pytest.raises(UpstreamError) as raised:
        await service.hold("acme/api#1", ACTOR, "no")

    assert "GitHub failed to add the label 'hold'" in raised.value.message
    assert "500" in raised.value.message and "Nothing was changed" in raised.value.message
    assert [label["name"] for label in fake.issue("acme/api", 1)["labels"]] == [READY]
    # Only the audit trail (requested, failed) was recorded: no ISSUE_HELD.
    after = await context.store.read_all(before)
    assert [e.type for e in after] == ["ADMIN_ACTION_REQUESTED", "ADMIN_ACTION_FAILED"]
    issue = await context.projections.issue("acme/api#1")
    assert issue is not None and not issue.held
    assert await claim(context, "dev-e-1") == "acme/api#1"


async def test_priority_sets_the_canonical_label_and_the_sync_agrees(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    context, service = steering(github_context, make_client)
    await approved(context, fake, 1)
    fake.add_label("acme/api", 1, "p1")

    await service.priority("acme/api#1", "critical", ACTOR)

    labels = [label["name"] for label in fake.issue("acme/api", 1)["labels"]]
    assert labels == [READY, "priority:critical"]
    issue = await context.projections.issue("acme/api#1")
    assert issue is not None and issue.priority == "critical"
    result = await SyncService(context, make_client(context.settings)).run()
    assert not result.changed, result
    issue = await context.projections.issue("acme/api#1")
    assert issue is not None and issue.priority == "critical"


async def test_approve_then_a_sync_run_keeps_it_approved(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    context, service = steering(github_context, make_client)
    fake.add_issue("acme/api", 7, title="Add search", labels=["enhancement"])

    await service.approve("acme/api#7", ACTOR, "high")

    labels = [label["name"] for label in fake.issue("acme/api", 7)["labels"]]
    assert labels == ["enhancement", READY, "priority:high"]
    issue = await context.projections.issue("acme/api#7")
    assert issue is not None and (issue.state, issue.priority) == ("queued", "high")
    result = await SyncService(context, make_client(context.settings)).run()
    assert result.found == 1 and not result.changed, result
    assert len(await events_of(context, "ISSUE_APPROVED")) == 1
    issue = await context.projections.issue("acme/api#7")
    assert issue is not None and (issue.state, issue.priority) == ("queued", "high")
    with pytest.raises(Conflict):
        await service.approve("acme/api#7", ACTOR)


async def test_a_failed_issue_requeued_goes_to_its_route_s_only_agent_again(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    context, service = steering(github_context, make_client)
    await approved(context, fake, 1)
    assert await claim(context, "dev-e-1") == "acme/api#1"
    data = catalogue.validate(
        "ESCALATED", {"repo": "acme/api", "issueNumber": 1, "reason": "two attempts"}, internal=True
    )
    await context.store.append("acme/api#1", [NewEvent("ESCALATED", data)])
    assert (await context.projections.issue("acme/api#1")).state == "failed"

    await service.requeue("acme/api#1", ACTOR, "try again")

    # The failed issue's last assignee holds nothing: it is not kept from it.
    assert await claim(context, "dev-e-1") == "acme/api#1"


async def test_requeue_takes_it_from_the_old_agent_and_the_next_agent_gets_it(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    context, service = steering(github_context, make_client)
    await approved(context, fake, 1, priority="high")
    await approved(context, fake, 2)
    assert await claim(context, "dev-e-1") == "acme/api#1"

    await service.requeue("acme/api#1", ACTOR, "stuck for an hour")

    issue = await context.projections.issue("acme/api#1")
    assert issue is not None and (issue.state, issue.assignee) == ("queued", None)
    # The old agent's heartbeat still naming it is recorded as not its own.
    await Services.build(context).events.record(
        {
            "type": "HEARTBEAT",
            "agentId": "dev-e-1",
            "status": "working",
            "currentRepo": "acme/api",
            "currentIssue": 1,
        },
        AGENT,
    )
    agent = await context.projections.agent("dev-e-1", context.clock(), context.stale_after)
    assert agent is not None and agent.current_issue is None
    # Its next claim does not hand it back; the next agent's does (at its priority: first).
    assert await claim(context, "dev-e-1") == "acme/api#2"
    assert await claim(context, "dev-e-2") == "acme/api#1"
    await approved(context, fake, 3)
    with pytest.raises(Conflict):
        await service.requeue("acme/api#3", ACTOR)  # queued: nothing to take back


async def test_pause_then_pull_answers_nothing_and_resume_gives_work(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    context, service = steering(github_context, make_client)
    await approved(context, fake, 1)

    await service.pause("dev-e-1", ACTOR, "burning tokens")

    agent = await context.projections.agent("dev-e-1", context.clock(), context.stale_after)
    assert agent is not None and agent.paused and agent.paused_by == ACTOR
    assert await claim(context, "dev-e-1") is None
    assert await claim(context, "dev-e-1/abc12") is None  # an instance of it, too
    with pytest.raises(Conflict):
        await service.assign("acme/api#1", "dev-e-1", ACTOR)
    await service.resume("dev-e-1", ACTOR)
    assert await claim(context, "dev-e-1") == "acme/api#1"


async def test_assign_is_refused_when_routing_says_no_and_done_when_it_allows(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    context, service = steering(github_context, make_client, CONDUCTOR_DEFAULT_STACK="python")
    await approved(context, fake, 1)

    with pytest.raises(Conflict) as refused:
        await service.assign("acme/api#1", "dev-e-node", ACTOR)
    assert "routing says dev-e-node cannot take acme/api#1" in refused.value.message
    assert "dev-e-python" in refused.value.message
    assert await events_of(context, "ISSUE_ASSIGNED") == []

    await service.assign("acme/api#1", "dev-e-python", ACTOR)
    issue = await context.projections.issue("acme/api#1")
    assert issue is not None and (issue.state, issue.assignee) == ("assigned", "dev-e-python")
    (assigned,) = await events_of(context, "ISSUE_ASSIGNED")
    assert assigned.metadata["actor"] == ACTOR


@pytest.mark.parametrize("round_", range(8))
async def test_concurrent_hold_and_claim_exactly_one_wins(
    round_: int,
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    """Whichever the store serialises first wins: a claim before the hold hands the issue out
    (the hold then only stops its merge); a hold first means the claim gets nothing."""
    context, service = steering(github_context, make_client)
    await approved(context, fake, 1)

    got, _ = await asyncio.gather(claim(context, "dev-e-1"), service.hold("acme/api#1", ACTOR))

    (held,) = await events_of(context, "ISSUE_HELD")
    assigned = await events_of(context, "ISSUE_ASSIGNED")
    if got is None:
        assert assigned == []
    else:
        assert got == "acme/api#1" and assigned[0].position < held.position
    issue = await context.projections.issue("acme/api#1")
    assert issue is not None and issue.held
    assert issue.state == ("queued" if got is None else "assigned")


# --- the HTTP API -----------------------------------------------------------------------------


async def test_the_steering_api_is_refused_without_steer_tokens(
    api_client_factory: Callable[[AppContext], Awaitable[TestClient]],
    github_context: Callable[..., AppContext],
    fake: FakeGitHub,
) -> None:
    context = github_context(CONDUCTOR_MANAGED_REPOS=REPOS)
    await approved(context, fake, 1)
    client = await api_client_factory(context)
    answer = await client.post("/api/issues/acme/api/1/hold", json={})
    assert answer.status == 403
    answer = await client.post(
        "/api/agents/dev-e-1/pause", json={}, headers={"Authorization": f"Bearer {STEER_TOKEN}"}
    )
    assert answer.status == 403
    assert await events_of(context, "ISSUE_HELD", "AGENT_PAUSED") == []


async def test_the_steering_api_with_a_steer_token(
    api_client_factory: Callable[[AppContext], Awaitable[TestClient]],
    github_context: Callable[..., AppContext],
    fake: FakeGitHub,
) -> None:
    context = github_context(
        CONDUCTOR_MANAGED_REPOS=REPOS, CONDUCTOR_STEER_TOKENS=f"ops-script={STEER_TOKEN}"
    )
    await approved(context, fake, 1)
    client = await api_client_factory(context)
    auth = {"Authorization": f"Bearer {STEER_TOKEN}"}

    answer = await client.post("/api/issues/acme/api/1/hold", json={"reason": "x"})
    assert answer.status == 401
    answer = await client.post(
        "/api/issues/acme/api/1/hold",
        json={},
        headers={"Authorization": "Bearer wrong-token-000000"},
    )
    assert answer.status == 401

    answer = await client.post("/api/issues/acme/api/1/hold", json={"reason": "x"}, headers=auth)
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    assert body["action"] == "hold" and body["target"] == "acme/api#1"
    (held,) = await events_of(context, "ISSUE_HELD")
    assert held.metadata == {"source": "api", "actor": "api:ops-script"}
    assert (await client.get("/api/assignments/next?agentId=dev-e-1")).status == 204

    answer = await client.post("/api/issues/acme/api/1/hold", json={}, headers=auth)
    assert answer.status == 409
    answer = await client.post("/api/issues/acme/api/1/unhold", json={}, headers=auth)
    assert answer.status == 200
    answer = await client.post(
        "/api/issues/acme/api/1/priority", json={"priority": "urgent"}, headers=auth
    )
    assert answer.status == 400
    answer = await client.post(
        "/api/issues/acme/api/1/priority", json={"priority": "high"}, headers=auth
    )
    assert answer.status == 200
    answer = await client.post("/api/agents/dev-e-1/pause", json={}, headers=auth)
    assert answer.status == 200
    assert (await client.get("/api/assignments/next?agentId=dev-e-1")).status == 204
    answer = await client.post("/api/agents/dev-e-1/resume", json={}, headers=auth)
    assert answer.status == 200
    answer = await client.post(
        "/api/issues/acme/api/1/assign", json={"agentId": "dev-e-2"}, headers=auth
    )
    assert answer.status == 200
    answer = await client.post("/api/issues/acme/api/1/requeue", json={}, headers=auth)
    assert answer.status == 200
    assert (await client.get("/api/assignments/next?agentId=dev-e-2")).status == 204
    answer = await client.get("/api/assignments/next?agentId=dev-e-1")
    assert answer.status == 200 and (await answer.json())["streamId"] == "acme/api#1"
    fake.add_issue("acme/api", 9, labels=[])
    answer = await client.post("/api/issues/acme/api/9/approve", json={}, headers=auth)
    assert answer.status == 200


def test_the_summary_names_held_issues_and_paused_agents() -> None:
    facts = Facts(held=["acme/api#1 held by discord:42: design"], paused=["dev-e-1 by api:ops"])
    text = template(facts)
    assert "⏸️ Held: acme/api#1 held by discord:42: design" in text
    assert "⏸️ Paused agents: dev-e-1 by api:ops" in text
    assert Facts().digest() != facts.digest()


async def test_the_sync_follows_the_hold_label_set_on_github(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    context, _ = steering(github_context, make_client)
    await approved(context, fake, 1)
    sync = SyncService(context, make_client(context.settings))

    fake.add_label("acme/api", 1, "hold")
    first = await sync.run()
    assert first.held == ["acme/api#1"]
    issue = await context.projections.issue("acme/api#1")
    assert issue is not None and issue.held and issue.held_by == "conductor-e"
    assert issue.held_reason == "the 'hold' label was added on GitHub"
    assert not (await sync.run()).changed

    fake.remove_label("acme/api", 1, "hold")
    assert (await sync.run()).unheld == ["acme/api#1"]
    issue = await context.projections.issue("acme/api#1")
    assert issue is not None and not issue.held
