"""A real `conductor-e api` SIGKILLed between the assignment event and the stream write.

Valkey is told to hold writes (CLIENT PAUSE ... WRITE; reads still answer), so the process
reads the agent's stream, claims the issue (ISSUE_ASSIGNED and the outbox row commit) and then
waits on the write. The test kills it there. The entry is not in the stream; after a restart
the outbox sends it, exactly once, and the restarted process claims nothing twice.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.context import AppContext
from store import catalogue
from store.dispatch import Outbox
from store.events import EventStore, NewEvent
from tests.dispatch.conftest import Delivered, RedisServer, RuntimeConsumer
from tests.faults.test_sigkill import wait_exit
from tests.routing.test_claims import configure
from tests.test_cli import clean_environment, free_port
from tests.waiting import wait_until


def spawn_api(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("w") as log_handle:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "api"],
            env=env,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
async def test_killed_between_the_event_and_the_stream_write_then_restarted(
    database_url: str, context: AppContext, redis_server: RedisServer, tmp_path: Path
) -> None:
    store: EventStore = context.store
    await configure(context, "acme/ml", {"stack": "python"})
    for number in (1, 2):
        data = catalogue.validate(
            "ISSUE_APPROVED", {"repo": "acme/ml", "issueNumber": number, "priority": "normal"}
        )
        await store.append(f"acme/ml#{number}", [NewEvent("ISSUE_APPROVED", data)])
    agent = RuntimeConsumer(redis_server.url, "dev-e-python")
    await agent.create_group()
    await agent.redis.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
    env = clean_environment()
    env.update(
        DATABASE_URL=database_url,
        CONDUCTOR_HTTP_HOST="127.0.0.1",
        CONDUCTOR_HTTP_PORT=str(free_port()),
        CONDUCTOR_VALKEY_URL=redis_server.url,
        CONDUCTOR_RETRY_MAX_SECONDS="1",
    )
    outbox = Outbox(context.pool)

    async def claimed() -> bool:
        return (await outbox.stats()).unsent == 1

    killed = spawn_api(env, tmp_path / "killed.log")
    try:
        await wait_until(claimed, timeout=60, what="the claim to commit")
    finally:
        assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        killed.send_signal(signal.SIGKILL)
    assert await wait_exit(killed, timeout=30) == -signal.SIGKILL
    await agent.redis.execute_command("CLIENT", "UNPAUSE")
    assert await agent.entries() == []  # the kill came before the write
    issue = await context.projections.issue("acme/ml#1")
    assert issue is not None and issue.assignee == "dev-e-python"

    restarted = spawn_api(env, tmp_path / "restarted.log")
    try:

        async def pushed() -> Delivered | None:
            assert restarted.poll() is None, (tmp_path / "restarted.log").read_text()[-3000:]
            return await agent.read(block_ms=200)

        first = await wait_until(
            pushed,
            ok=lambda delivery: delivery is not None,
            timeout=60,
            what="#1 pushed again after the restart",
            interval=0,  # each read blocks for up to 200 ms
        )
        await agent.ack(first)
        second = await wait_until(
            lambda: agent.read(block_ms=200),
            ok=lambda delivery: delivery is not None,
            timeout=60,
            what="#2 pushed",
            interval=0,
        )
        await agent.ack(second)
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert await wait_exit(restarted, timeout=30) == 0
        await agent.close()

    numbers = [d.fields["issueNumber"] for d in agent.received]
    assert numbers == ["1", "2"]  # #1 once (re-sent from the outbox), then #2
    rows = await context.pool.fetch(
        "SELECT stream_id, count(*) AS n FROM events WHERE type = 'ISSUE_ASSIGNED' "
        "GROUP BY stream_id"
    )
    assert {row["stream_id"]: row["n"] for row in rows} == {"acme/ml#1": 1, "acme/ml#2": 1}
    assert (await outbox.stats()).unsent == 0
