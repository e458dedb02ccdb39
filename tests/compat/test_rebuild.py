"""Everything the runtime's requests leave in the projections is rebuilt from the events alone."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from store.projections import projection_snapshot, rebuild_projections
from tests.compat.conftest import send
from tests.compat.runtime import (
    FAILED,
    execution_log_create,
    failed_step,
    heartbeat,
    merge_request,
    review_verdict,
    token_usage,
)


async def test_a_rebuild_reproduces_every_projection(api: TestClient, pool: asyncpg.Pool) -> None:
    await send(api, "/api/events", heartbeat("dev-e-node/x7k2q", "working", 0, ""))
    await send(api, "/api/events", token_usage("dev-e-node", input_tokens=7))
    await send(
        api,
        "/api/events",
        token_usage("dev-e-node", model="claude-opus-4-6", input_tokens=9, env_repo="acme/app"),
    )
    await send(
        api,
        "/api/events",
        token_usage("dev-e-node", model="claude-opus-4-6", env_repo="acme/app", env_issue="12"),
    )
    run = await send(
        api, "/api/execution-logs", execution_log_create("acme/app", "12", "dev-e-node", None), 201
    )
    await send(api, f"/api/execution-logs/{run['id']}/steps", failed_step("boom"))
    await send(api, f"/api/execution-logs/{run['id']}/logs", [{"level": "info", "message": "m"}])
    await send(api, f"/api/execution-logs/{run['id']}/complete", FAILED)
    await send(api, "/api/events", review_verdict("REVIEW_PASSED", "acme/app", "41", "review-e"))
    await send(api, "/api/merge", merge_request("acme/app", "40"), 202)
    await send(
        api, "/api/events", {"type": "ISSUE_APPROVED", "repo": "acme/app", "issueNumber": 12}
    )
    await send(
        api,
        "/api/events",
        {"type": "PR_CREATED", "repo": "acme/app", "issueNumber": 12, "prNumber": 41},
    )

    async with pool.acquire() as conn:
        before = await projection_snapshot(conn)
        await rebuild_projections(conn)
        after = await projection_snapshot(conn)
    assert before == after
    assert len(before["execution_logs"]) == 1
    # PR 41's verdict was linked (no longer pending); the merge request for PR 40 still waits.
    assert [row[2] for row in before["pending_pr_events"]] == ["acme/app"]
    assert [row[3] for row in before["pending_pr_events"]] == [40]
    # Unattributed usage is kept apart from the issues' (stream_id ''), never dropped.
    assert sorted(row[0] for row in before["usage_by_issue"]) == ["", "", "acme/app#12"]
