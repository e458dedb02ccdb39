"""The execution log of one assignment, as src/stream-consumer.js processMessage() writes it.

Source: tests.compat.runtime.STREAM_CONSUMER_JS. The success path is create → implement step →
model-usage log lines → complete; the failure path is create → failed step → {status: failed}.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from bot.services.intake.execution_logs import CUT, MAX_LOG_LINES, MAX_STEPS, MAX_TEXT
from tests.compat.conftest import read, send
from tests.compat.runtime import (
    FAILED,
    completion,
    execution_log_create,
    failed_step,
    implement_step,
    model_usage_lines,
)

RESPONSE: dict[str, Any] = {
    "text": "Done. Opened https://github.com/acme/app/pull/41 which closes #12.",
    "durationMs": 95_000,
    "durationApiMs": 61_000,
    "inputTokens": 120_000,
    "outputTokens": 9_000,
    "cacheReadTokens": 800_000,
    "cacheCreationTokens": 40_000,
    "costUsd": 1.234,
    "turns": 17,
    "modelUsage": {
        "claude-sonnet-4-6": {
            "inputTokens": 120_000,
            "outputTokens": 9_000,
            "cacheReadInputTokens": 800_000,
            "cacheCreationInputTokens": 40_000,
            "costUSD": 1.2,
        },
        "claude-haiku-4-5-20251001": {"inputTokens": 3_000, "outputTokens": 100, "costUSD": 0.034},
    },
}


async def _create(api: TestClient, model: str | None = "claude-sonnet-4-6") -> str:
    body = execution_log_create("acme/app", "12", "dev-e-node", model)
    created = await send(api, "/api/execution-logs", body, status=201)
    assert len(created["id"]) == 32
    assert created["status"] == "running"
    assert created["steps"] == body["steps"]
    return str(created["id"])


async def test_a_run_from_assignment_to_completion(api: TestClient) -> None:
    log_id = await _create(api)
    answer = await send(api, f"/api/execution-logs/{log_id}/steps", implement_step(RESPONSE))
    assert answer == {"id": log_id, "steps": 2}
    lines = model_usage_lines(RESPONSE, "2026-12-01T06:00:00.000Z")
    answer = await send(api, f"/api/execution-logs/{log_id}/logs", lines)
    assert answer == {"id": log_id, "logs": 2, "dropped": 0}
    await send(api, f"/api/execution-logs/{log_id}/complete", completion(RESPONSE, 41))

    run = await read(api, f"/api/execution-logs/{log_id}")
    assert run["status"] == "completed"
    assert (run["repo"], run["issueNumber"], run["agentId"]) == ("acme/app", 12, "dev-e-node")
    assert (run["model"], run["totalTurns"], run["totalCostUsd"]) == (
        "claude-sonnet-4-6",
        17,
        1.234,
    )
    assert (run["inputTokens"], run["outputTokens"], run["prNumber"]) == (120_000, 9_000, 41)
    assert (run["cacheReadTokens"], run["durationApiMs"]) == (800_000, 61_000)
    assert [s["type"] for s in run["steps"]] == ["assigned", "implement"]
    assert run["steps"][1]["costUsd"] == 1.234
    assert run["logs"][0]["message"].startswith("Model claude-sonnet-4-6: 120000 in")
    assert run["completedAt"] is not None

    listed = await read(api, "/api/execution-logs?repo=acme/app&issueNumber=12")
    assert [r["id"] for r in listed["executionLogs"]] == [log_id]
    assert (await read(api, "/api/execution-logs?repo=acme/app&issueNumber=13")) == {
        "executionLogs": []
    }
    # Stored as events on the run's own stream, so they rebuild and stream like the rest.
    stream = (await read(api, f"/api/events/stream?id=execution-log%23{log_id}"))["events"]
    assert [e["type"] for e in stream] == [
        "EXECUTION_LOG_STARTED",
        "EXECUTION_LOG_STEP",
        "EXECUTION_LOG_LINES",
        "EXECUTION_LOG_COMPLETED",
    ]


async def test_the_failure_path(api: TestClient) -> None:
    log_id = await _create(api, model=None)  # character.llm.model unset → 'unknown'
    await send(api, f"/api/execution-logs/{log_id}/steps", failed_step("spawn claude ENOENT"))
    await send(api, f"/api/execution-logs/{log_id}/complete", FAILED)
    run = await read(api, f"/api/execution-logs/{log_id}")
    assert (run["status"], run["model"], run["totalCostUsd"]) == ("failed", "unknown", None)
    assert run["steps"][1] == {
        "type": "implement",
        "status": "failed",
        "detail": "spawn claude ENOENT",
    }


async def test_a_completion_without_a_pr_or_figures(api: TestClient) -> None:
    """response.costUsd and .turns undefined: the step lacks them, the completion sends zeros
    and prNumber null."""
    log_id = await _create(api)
    response = {k: v for k, v in RESPONSE.items() if k not in ("costUsd", "turns")}
    await send(api, f"/api/execution-logs/{log_id}/steps", implement_step(response))
    await send(api, f"/api/execution-logs/{log_id}/complete", completion({}, None))
    run = await read(api, f"/api/execution-logs/{log_id}")
    assert (run["status"], run["prNumber"], run["totalTurns"]) == ("completed", None, 0)
    assert "costUsd" not in run["steps"][1]


async def test_unknown_ids_are_404_json(api: TestClient) -> None:
    for path in ("0" * 32, "nope", "0" * 32 + "/steps", "0" * 32 + "/logs", "0" * 32 + "/complete"):
        if path.endswith(("steps", "logs", "complete")):
            answer = await send(api, f"/api/execution-logs/{path}", {"status": "failed"}, 404)
        else:
            answer = await read(api, f"/api/execution-logs/{path}", 404)
        assert answer["error"] == "not_found"


async def test_a_run_is_bounded(api: TestClient) -> None:
    log_id = await _create(api)
    long = "x" * (MAX_TEXT * 3)
    await send(api, f"/api/execution-logs/{log_id}/steps", failed_step(long))
    run = await read(api, f"/api/execution-logs/{log_id}")
    assert len(run["steps"][1]["detail"]) == MAX_TEXT
    assert run["steps"][1]["detail"].endswith(CUT)
    for _ in range(MAX_STEPS - 2):
        await send(api, f"/api/execution-logs/{log_id}/steps", failed_step("again"))
    answer = await send(
        api, f"/api/execution-logs/{log_id}/steps", failed_step("one too many"), 409
    )
    assert str(MAX_STEPS) in answer["message"]

    line = {"timestamp": "t", "level": "info", "message": "m"}
    answer = await send(api, f"/api/execution-logs/{log_id}/logs", [line] * (MAX_LOG_LINES + 5))
    assert answer == {"id": log_id, "logs": MAX_LOG_LINES, "dropped": 5}
    await send(api, f"/api/execution-logs/{log_id}/logs", [line], 409)
    # The completion still lands on a full run.
    await send(api, f"/api/execution-logs/{log_id}/complete", FAILED)
    assert (await read(api, f"/api/execution-logs/{log_id}"))["status"] == "failed"


async def test_malformed_bodies_are_refused(api: TestClient) -> None:
    log_id = await _create(api)
    answer = await send(api, f"/api/execution-logs/{log_id}/steps", {"type": 5}, 400)
    assert "'step.type'" in answer["message"]
    await send(api, f"/api/execution-logs/{log_id}/logs", {"level": "info"}, 400)
    await send(api, f"/api/execution-logs/{log_id}/complete", {"status": "x", "prNumber": "4"}, 400)
    body = {**execution_log_create("acme/app", "12", "dev-e-node", None), "steps": "none"}
    await send(api, "/api/execution-logs", body, 400)
    run = await read(api, f"/api/execution-logs/{log_id}")
    assert (len(run["steps"]), run["logs"], run["status"]) == (1, [], "running")
