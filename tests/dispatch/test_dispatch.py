"""Push dispatch against a real redis-server, read by a consumer that does what the agent
runtime does: routing, the entry's fields, depth and priority across acknowledgements, the
exclusive claim shared with the pull path, exactly once across a crash, Valkey down under load.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiohttp.test_utils import TestClient

from bot.context import AppContext
from bot.services.coordination.stuck import StuckDetector
from bot.services.dispatch.dispatcher import VALKEY, DispatchService
from store import catalogue
from store.dispatch import Outbox
from store.events import NewEvent
from tests.dispatch.conftest import RedisServer, RuntimeConsumer
from tests.routing.test_claims import approve, configure, take
from tests.waiting import wait_until

StartApi = Callable[[AppContext], Awaitable[TestClient]]
MakeDispatcher = Callable[..., DispatchService]
MakeConsumer = Callable[[str], RuntimeConsumer]


async def assigned_counts(context: AppContext) -> Counter[str]:
    rows = await context.pool.fetch(
        "SELECT stream_id FROM events WHERE type IN ('ISSUE_ASSIGNED', 'REVIEW_ASSIGNED')"
    )
    return Counter(row["stream_id"] for row in rows)


async def test_entry_has_the_runtimes_fields_and_wakes_the_agent(
    dispatcher_factory: MakeDispatcher, consumers: MakeConsumer, api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory()
    api = await api_client_factory(dispatcher.context, dispatch=dispatcher)
    await configure(
        dispatcher.context,
        "acme/ml",
        {
            "stack": "python",
            "tools": ["uv", "ruff"],
            "testCommand": "make test",
            "buildCommand": "make build",
        },
    )
    await configure(dispatcher.context, "acme/web", {"stack": "node"})
    await approve(
        api, "acme/ml", 7, title="Fix the parser", url="https://github.com/acme/ml/issues/7"
    )
    await approve(api, "acme/web", 8, title="Node work")

    result = await dispatcher.tick()

    assert result.claimed == 2
    python, node = consumers("dev-e-python"), consumers("dev-e-node")
    assert await python.signals() == 1  # KEDA's list: the agent wakes from zero
    delivered = await python.read()
    assert delivered is not None
    assert delivered.fields == {
        "assignmentId": delivered.fields["assignmentId"],
        "repo": "acme/ml",
        "issueNumber": "7",
        "title": "Fix the parser",
        "priority": "normal",
        "stack": "python",
        "testCommand": "make test",
        "buildCommand": "make build",
        "tools": "uv,ruff",
        "body": "https://github.com/acme/ml/issues/7",
    }
    assert await python.signals() == 0
    issue = await dispatcher.context.projections.issue("acme/ml#7")
    assert issue is not None and issue.state == "assigned" and issue.assignee == "dev-e-python"
    node_entry = await node.read()
    assert node_entry is not None and node_entry.fields["repo"] == "acme/web"
    assert node_entry.fields["stack"] == "node"
    assert dispatcher.context.components.get(VALKEY) is None  # tick() alone does not report


async def test_depth_holds_back_work_and_priority_survives_acknowledgements(
    dispatcher_factory: MakeDispatcher, consumers: MakeConsumer, api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory()
    api = await api_client_factory(dispatcher.context, dispatch=dispatcher)
    await configure(dispatcher.context, "acme/ml", {"stack": "python"})
    await approve(api, "acme/ml", 1, priority="normal")
    await approve(api, "acme/ml", 2, priority="high")
    await approve(api, "acme/ml", 3, priority="critical")
    agent = consumers("dev-e-python")
    order: list[str] = []

    await dispatcher.tick()
    first = await agent.read()
    assert first is not None
    order.append(first.fields["issueNumber"])
    await dispatcher.tick()  # depth 1: nothing more while #3 is unacknowledged
    assert len(await agent.entries()) == 1

    await agent.ack(first)
    await dispatcher.tick()
    second = await agent.read()
    assert second is not None
    order.append(second.fields["issueNumber"])
    # A critical issue approved while #2 is held overtakes #1, which waited longer.
    await approve(api, "acme/ml", 4, priority="critical")
    await dispatcher.tick()
    assert len(await agent.entries()) == 2
    await agent.ack(second)
    for _ in range(2):
        await dispatcher.tick()
        nxt = await agent.read()
        assert nxt is not None
        order.append(nxt.fields["issueNumber"])
        await agent.ack(nxt)

    assert order == ["3", "2", "4", "1"]
    queued = await dispatcher.context.projections.queue()
    assert queued == []


async def test_depth_two_keeps_two_unacknowledged(
    dispatcher_factory: MakeDispatcher, consumers: MakeConsumer, api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory({"CONDUCTOR_DISPATCH_DEPTH": "2"})
    api = await api_client_factory(dispatcher.context, dispatch=dispatcher)
    await configure(dispatcher.context, "acme/ml", {"stack": "python"})
    for number in range(1, 6):
        await approve(api, "acme/ml", number)
    agent = consumers("dev-e-python")

    await dispatcher.tick()
    assert [e["issueNumber"] for e in await agent.entries()] == ["1", "2"]
    one = await agent.read()
    await dispatcher.tick()  # read but not acknowledged still counts
    assert len(await agent.entries()) == 2
    assert one is not None
    await agent.ack(one)
    await dispatcher.tick()
    assert [e["issueNumber"] for e in await agent.entries()] == ["1", "2", "3"]


async def test_a_pr_goes_to_the_reviewers_stream_with_its_number(
    dispatcher_factory: MakeDispatcher, consumers: MakeConsumer, api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory()
    api = await api_client_factory(dispatcher.context, dispatch=dispatcher)
    await configure(dispatcher.context, "acme/ml", {"stack": "python"})
    await approve(api, "acme/ml", 5)
    await dispatcher.tick()
    dev = consumers("dev-e-python")
    work = await dev.read()
    assert work is not None
    body = {
        "type": "PR_CREATED",
        "repo": "acme/ml",
        "issueNumber": 5,
        "agentId": "dev-e-python",
        "prNumber": 41,
    }
    assert (await api.post("/api/events", json=body)).status == 200
    await dev.ack(work)

    await dispatcher.tick()

    review = await consumers("review-e").read()
    assert review is not None
    assert review.fields["issueNumber"] == "41"
    assert review.fields["repo"] == "acme/ml"
    issue = await dispatcher.context.projections.issue("acme/ml#5")
    assert issue is not None and issue.reviewer == "review-e"


async def test_pull_and_push_never_hand_out_the_same_issue(
    dispatcher_factory: MakeDispatcher, consumers: MakeConsumer, api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory({"CONDUCTOR_DISPATCH_DEPTH": "100"})
    api = await api_client_factory(dispatcher.context, dispatch=dispatcher)
    await configure(dispatcher.context, "acme/ml", {"stack": "python"})
    total = 120
    for number in range(1, total + 1):
        await approve(api, "acme/ml", number)

    async def pull() -> list[str]:
        taken: list[str] = []
        while (stream := await take(api, "dev-e-python")) is not None:
            taken.append(stream)
        return taken

    async def push() -> None:
        for _ in range(3):
            await dispatcher.tick()

    pulled_lists = await asyncio.gather(pull(), pull(), push())
    pulled = [s for taken in pulled_lists[:2] for s in taken]
    await dispatcher.tick()
    pushed = [f"{e['repo']}#{e['issueNumber']}" for e in await consumers("dev-e-python").entries()]

    assert set(pulled).isdisjoint(pushed)
    assert len(pulled) + len(pushed) == total
    assert sorted(set(pulled) | set(pushed)) == sorted(f"acme/ml#{n}" for n in range(1, total + 1))
    assert set((await assigned_counts(dispatcher.context)).values()) == {1}


async def test_a_crash_after_the_stream_write_sends_nothing_twice(
    dispatcher_factory: MakeDispatcher, consumers: MakeConsumer, api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory()
    api = await api_client_factory(dispatcher.context, dispatch=dispatcher)
    await configure(dispatcher.context, "acme/ml", {"stack": "python"})
    await approve(api, "acme/ml", 1)
    outbox = Outbox(dispatcher.context.pool)
    # The claim and its outbox row commit; the entry is written; the process dies before it
    # marks the row sent.
    entry = await outbox.claim(
        "issue", "dev-e-python", {"source": "test"}, route_keys=["python"], unrouted=True
    )
    assert entry is not None
    await dispatcher.valkey.push(entry.agent_id, entry.token, entry.fields)

    restarted = dispatcher_factory()
    await restarted.tick()

    entries = await consumers("dev-e-python").entries()
    assert [e["assignmentId"] for e in entries] == [entry.token]
    assert (await outbox.stats()).unsent == 0


async def test_a_crash_before_the_stream_write_delays_but_loses_nothing(
    dispatcher_factory: MakeDispatcher, consumers: MakeConsumer, api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory()
    api = await api_client_factory(dispatcher.context, dispatch=dispatcher)
    await configure(dispatcher.context, "acme/ml", {"stack": "python"})
    await approve(api, "acme/ml", 1)
    outbox = Outbox(dispatcher.context.pool)
    entry = await outbox.claim(
        "issue", "dev-e-python", {"source": "test"}, route_keys=["python"], unrouted=True
    )
    assert entry is not None
    assert (await outbox.stats()).unsent == 1

    await dispatcher_factory().tick()

    entries = await consumers("dev-e-python").entries()
    assert [e["issueNumber"] for e in entries] == ["1"]
    assert (await outbox.stats()).unsent == 0


async def test_valkey_down_for_ten_seconds_under_load_loses_and_doubles_nothing(
    dispatcher_factory: MakeDispatcher,
    consumers: MakeConsumer,
    api_client_factory: StartApi,
    redis_server: RedisServer,
) -> None:
    dispatcher = dispatcher_factory()
    context = dispatcher.context
    api = await api_client_factory(context, dispatch=dispatcher)
    stacks = ["python", "node", "dotnet", "go"]
    for stack in stacks:
        await configure(context, f"acme/{stack}", {"stack": stack})
    stop = asyncio.Event()
    agents = [consumers(f"dev-e-{stack}") for stack in stacks]
    workers = [asyncio.create_task(agent.work(stop)) for agent in agents]
    running = asyncio.create_task(dispatcher.run(stop))
    approved: list[str] = []

    async def load(count: int) -> None:
        for _ in range(count):
            n = len(approved) + 1
            stack = stacks[n % len(stacks)]
            await approve(api, f"acme/{stack}", n)
            approved.append(f"acme/{stack}#{n}")
            await asyncio.sleep(0)

    async def received() -> list[str]:
        return [f"{d.fields['repo']}#{d.fields['issueNumber']}" for a in agents for d in a.received]

    try:
        await load(40)
        await wait_until(
            received, ok=lambda got: len(got) >= 20, timeout=30, what="the first pushes"
        )
        redis_server.stop()
        outage = asyncio.create_task(asyncio.sleep(10))  # the scenario: 10 s without Valkey
        while not outage.done():
            await load(5)
            await asyncio.sleep(0.2)
        await wait_until(
            lambda: context.components.is_down(VALKEY), timeout=5, what="valkey reported down"
        )
        redis_server.start()
        # By issue, not by count: an entry whose acknowledgement the outage cut off is read
        # again from the pending list, so `received` holds it twice.
        await wait_until(
            received,
            ok=lambda got: set(got) >= set(approved),
            timeout=60,
            what="every issue delivered",
        )
        await wait_until(
            lambda: not context.components.is_down(VALKEY), timeout=5, what="valkey up"
        )
    finally:
        stop.set()
        await asyncio.gather(running, *workers)

    written = [f"{e['repo']}#{e['issueNumber']}" for a in agents for e in await a.entries()]
    assert sorted(written) == sorted(approved)  # nothing lost, nothing written twice
    assert set(await received()) == set(approved)  # and every one reached its agent
    assert set((await assigned_counts(context)).values()) == {1}
    assert (await Outbox(context.pool).stats()).unsent == 0


async def test_not_picked_up_names_an_entry_the_agent_never_read(
    dispatcher_factory: MakeDispatcher, consumers: MakeConsumer, api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory()
    api = await api_client_factory(dispatcher.context, dispatch=dispatcher)
    await configure(dispatcher.context, "acme/ml", {"stack": "python"})
    await approve(api, "acme/ml", 1)
    await dispatcher.tick()
    await dispatcher.tick()
    stuck = dispatcher.not_picked_up(timedelta(0))
    assert [(agent, entry.delivered) for agent, entry in stuck] == [("dev-e-python", False)]
    assert dispatcher.not_picked_up(timedelta(hours=1)) == []
    agent = consumers("dev-e-python")
    delivered = await agent.read()
    assert delivered is not None
    await agent.ack(delivered)
    await dispatcher.tick()
    assert dispatcher.not_picked_up(timedelta(0)) == []


async def test_stuck_detection_names_a_push_the_agent_never_read(
    dispatcher_factory: MakeDispatcher, api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory()
    context = dispatcher.context
    api = await api_client_factory(context, dispatch=dispatcher)
    await configure(context, "acme/ml", {"stack": "python"})
    await approve(api, "acme/ml", 1)
    await dispatcher.tick()  # pushed; the agent (scaled to zero) never wakes
    await dispatcher.tick()
    later = context.clock() + timedelta(minutes=31)

    report = await StuckDetector(context, dispatcher).run(later)

    assert report.requeued == ["acme/ml#1"]
    (stuck,) = await context.store.read_stream("dev-e-python")
    assert stuck.type == "AGENT_STUCK"
    assert stuck.data["reason"].startswith(
        "pushed to assignments:dev-e-python 31 min ago, never read;"
    )


async def test_one_dispatcher_at_a_time_across_replicas(
    dispatcher_factory: MakeDispatcher,
) -> None:
    first, second = (
        Outbox(dispatcher_factory().context.pool),
        Outbox(dispatcher_factory().context.pool),
    )
    lead = await first.try_lead()
    assert lead is not None
    assert await second.try_lead() is None
    await first.step_down(lead)
    taken = await second.try_lead()
    assert taken is not None
    await second.step_down(taken)


async def test_an_unsent_assignment_whose_issue_was_requeued_is_not_sent(
    dispatcher_factory: MakeDispatcher, consumers: MakeConsumer, api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory()
    context = dispatcher.context
    api = await api_client_factory(context, dispatch=dispatcher)
    await configure(context, "acme/ml", {"stack": "python"})
    await approve(api, "acme/ml", 1)
    outbox = Outbox(context.pool)
    # Claimed while Valkey was down; the outage outlasted the stuck window.
    entry = await outbox.claim(
        "issue", "dev-e-python", {"source": "test"}, route_keys=["python"], unrouted=True
    )
    assert entry is not None
    report = await StuckDetector(context, dispatcher).run(context.clock() + timedelta(minutes=31))
    assert report.requeued == ["acme/ml#1"]

    await dispatcher.tick()

    entries = await consumers("dev-e-python").entries()
    # Not the stale row: the issue is claimed afresh (a new assignment) and written once.
    assert [e["assignmentId"] for e in entries if e["assignmentId"] == entry.token] == []
    assert [e["issueNumber"] for e in entries] == ["1"]
    assert (await outbox.stats()).unsent == 0


async def steer(context: AppContext, event_type: str, payload: dict[str, object]) -> None:
    """What /agent pause and /issue hold record (bot/services/work/steering.py), without GitHub."""
    data = catalogue.validate(event_type, payload, internal=True)
    stream = catalogue.stream_for(event_type, data)
    await context.store.append(stream, [NewEvent(event_type, data, {"actor": "discord:42"})])


async def test_a_paused_agent_and_a_held_issue_are_pushed_nothing(
    dispatcher_factory: MakeDispatcher, consumers: MakeConsumer, api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory()
    context = dispatcher.context
    api = await api_client_factory(context, dispatch=dispatcher)
    await configure(context, "acme/ml", {"stack": "python"})
    await approve(api, "acme/ml", 1, priority="critical")
    await approve(api, "acme/ml", 2)
    agent = consumers("dev-e-python")

    await steer(context, "AGENT_PAUSED", {"agentId": "dev-e-python", "reason": "bad model"})
    await dispatcher.tick()
    assert await agent.entries() == [] and await agent.signals() == 0

    await steer(context, "ISSUE_HELD", {"repo": "acme/ml", "issueNumber": 1, "reason": "legal"})
    await steer(context, "AGENT_RESUMED", {"agentId": "dev-e-python"})
    await dispatcher.tick()
    entry = await agent.read()
    # The held critical #1 stays queued; the normal #2 is the best the agent may have.
    assert entry is not None and entry.fields["issueNumber"] == "2"
    held = await context.projections.issue("acme/ml#1")
    assert held is not None and held.state == "queued" and held.held
