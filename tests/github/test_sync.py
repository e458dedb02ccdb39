"""SyncService on a real PostgreSQL against the fake GitHub: approve, withdraw, reprioritise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.context import AppContext
from bot.integrations.github import GitHubClient
from bot.services.github.sync import SyncService
from store.events import NewEvent
from tests.fakes.github import FakeGitHub

READY = "agent-ready"
REPOS = "acme/api,acme/web"


async def events_of(context: AppContext, types: tuple[str, ...] | None = None) -> list:
    return await context.store.read_all(0, 100_000, types=list(types) if types else None)


def service(
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
    **env: str,
) -> tuple[AppContext, SyncService]:
    context = github_context(CONDUCTOR_MANAGED_REPOS=REPOS, **env)
    return context, SyncService(context, make_client(context.settings))


async def test_first_run_approves_each_agent_ready_issue_and_a_second_run_appends_nothing(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    fake.add_issue("acme/api", 1, title="Crash on start", labels=[READY, "P0"])
    fake.add_issue("acme/api", 2, labels=[READY])
    fake.add_issue("acme/web", 3, labels=[READY, "priority:high"])
    fake.add_issue("acme/web", 4, labels=["bug"])
    context, sync = service(github_context, make_client)

    first = await sync.run()

    assert sorted(first.approved) == ["acme/api#1", "acme/api#2", "acme/web#3"]
    assert not first.incomplete and first.errors == []
    approved = await events_of(context, ("ISSUE_APPROVED",))
    one = next(e for e in approved if e.stream_id == "acme/api#1")
    assert one.data == {
        "repo": "acme/api",
        "issueNumber": 1,
        "title": "Crash on start",
        "url": "https://github.com/acme/api/issues/1",
        "labels": [READY, "P0"],
        "priority": "critical",
    }
    assert one.metadata == {"actor": "conductor-e", "source": "github-sync"}
    queue = await context.projections.queue()
    assert [(i.stream_id, i.priority) for i in queue] == [
        ("acme/api#1", "critical"),
        ("acme/web#3", "high"),
        ("acme/api#2", "normal"),
    ]

    head = await context.store.head_position()
    second = await sync.run()

    assert await context.store.head_position() == head
    assert not second.changed
    assert second.requests == second.not_modified == first.requests  # all 304


async def test_two_syncs_at_once_approve_each_issue_once(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    for number in range(1, 21):
        fake.add_issue("acme/api", number, labels=[READY])
    context = github_context(CONDUCTOR_MANAGED_REPOS=REPOS)
    one = SyncService(context, make_client(context.settings))
    two = SyncService(context, make_client(context.settings))
    results = await asyncio.gather(one.run(), two.run())
    assert len(results[0].approved) + len(results[1].approved) == 20
    assert len(await events_of(context, ("ISSUE_APPROVED",))) == 20


async def test_label_removal_withdraws_a_queued_issue_and_relabelling_approves_it_again(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    fake.add_issue("acme/api", 1, labels=[READY])
    fake.add_issue("acme/api", 2, labels=[READY])
    context, sync = service(github_context, make_client)
    await sync.run()

    fake.remove_label("acme/api", 1, READY)
    fake.close("acme/api", 2, reason="not_planned")
    result = await sync.run()

    assert sorted(result.withdrawn) == ["acme/api#1", "acme/api#2"]
    withdrawn = {e.stream_id: e for e in await events_of(context, ("ISSUE_WITHDRAWN",))}
    assert withdrawn["acme/api#1"].data["reason"] == "the 'agent-ready' label was removed on GitHub"
    assert "closed on GitHub (not_planned)" in withdrawn["acme/api#2"].data["reason"]
    assert (await context.projections.issue("acme/api#1")).state == "withdrawn"
    assert await context.projections.queue() == []
    assert not (await sync.run()).changed  # withdrawn once

    fake.add_label("acme/api", 1, READY)
    again = await sync.run()
    assert again.approved == ["acme/api#1"]
    assert (await context.projections.issue("acme/api#1")).state == "queued"
    stream = await context.store.read_stream("acme/api#1")
    assert [e.type for e in stream] == ["ISSUE_APPROVED", "ISSUE_WITHDRAWN", "ISSUE_APPROVED"]
    assert not (await sync.run()).changed


async def test_no_withdrawal_when_the_search_was_incomplete(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    fake.add_issue("acme/api", 1, labels=[READY])
    fake.add_issue("acme/api", 2, labels=[READY])
    context, sync = service(github_context, make_client)
    await sync.run()

    fake.remove_label("acme/api", 1, READY)
    fake.incomplete()  # and it also drops its last item, acme/api#2
    result = await sync.run()
    assert result.incomplete and "incomplete_results" in result.reasons[0]
    assert result.withdrawn == []
    assert [i.stream_id for i in await context.projections.queue()] == ["acme/api#1", "acme/api#2"]

    fake.fail(500, times=4, path="/search/")
    failed = await sync.run()
    assert failed.incomplete and failed.withdrawn == []

    complete = await sync.run()
    assert complete.withdrawn == ["acme/api#1"]


async def test_a_lagging_search_index_withdraws_nothing(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    fake.add_issue("acme/api", 1, labels=[READY])
    context, sync = service(github_context, make_client)
    await sync.run()
    fake.search_lag.add(("acme/api", 1))  # the search misses it; the issue is still ready
    result = await sync.run()
    assert result.withdrawn == [] and result.errors == []
    assert (await context.projections.issue("acme/api#1")).state == "queued"


async def test_an_issue_being_worked_is_not_withdrawn(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    fake.add_issue("acme/api", 1, labels=[READY])
    context, sync = service(github_context, make_client)
    await sync.run()
    await context.store.append(
        "acme/api#1",
        [NewEvent("ISSUE_ASSIGNED", {"repo": "acme/api", "issueNumber": 1, "agentId": "dev-e"})],
    )
    fake.remove_label("acme/api", 1, READY)
    result = await sync.run()
    assert result.withdrawn == []
    assert (await context.projections.issue("acme/api#1")).state == "assigned"


async def test_an_issue_approved_without_the_label_is_left_alone(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    context, sync = service(github_context, make_client)
    # Approved by a person through the API, never labelled on GitHub.
    await context.store.append(
        "acme/api#9",
        [NewEvent("ISSUE_APPROVED", {"repo": "acme/api", "issueNumber": 9, "labels": []})],
    )
    result = await sync.run()
    assert result.withdrawn == []
    assert [r.path for r in fake.requests if r.path.startswith("/repos/")] == []


async def test_a_priority_label_change_reprioritises_once(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    fake.add_issue("acme/api", 1, labels=[READY])
    fake.add_issue("acme/api", 2, labels=[READY])
    context, sync = service(github_context, make_client)
    await sync.run()
    assert [i.stream_id for i in await context.projections.queue()] == ["acme/api#1", "acme/api#2"]

    fake.add_label("acme/api", 2, "P0")
    result = await sync.run()

    assert result.reprioritised == ["acme/api#2"]
    changed = await events_of(context, ("PRIORITY_CHANGED",))
    assert changed[0].data == {
        "repo": "acme/api",
        "issueNumber": 2,
        "priority": "critical",
        "labels": [READY, "P0"],
    }
    assert [i.stream_id for i in await context.projections.queue()] == ["acme/api#2", "acme/api#1"]
    assert not (await sync.run()).changed

    fake.remove_label("acme/api", 2, "P0")
    back = await sync.run()
    assert back.reprioritised == ["acme/api#2"]
    assert (await context.projections.issue("acme/api#2")).priority == "normal"


async def test_a_priority_set_by_hand_survives_while_the_labels_stay(
    fake: FakeGitHub,
    github_context: Callable[..., AppContext],
    make_client: Callable[..., GitHubClient],
) -> None:
    fake.add_issue("acme/api", 1, labels=[READY])
    context, sync = service(github_context, make_client)
    await sync.run()
    await context.store.append(
        "acme/api#1",
        [NewEvent("PRIORITY_CHANGED", {"repo": "acme/api", "issueNumber": 1, "priority": "high"})],
    )
    assert not (await sync.run()).changed
    assert (await context.projections.issue("acme/api#1")).priority == "high"
