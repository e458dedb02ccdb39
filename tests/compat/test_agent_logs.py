"""The runtime's activity log, as src/agent-log.js flushes it (tests.compat.runtime.AGENT_LOG_JS).

Every 2 s the runtime posts its buffered lines; it ignores the answer, so a line we cannot keep
costs only itself, never its batch.
"""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from bot.services.intake import agent_logs
from tests.compat.conftest import read, send
from tests.compat.runtime import agent_log_entry
from tests.compat.runtime import agent_logs as batch


async def test_a_flush_is_kept_and_read_back_newest_first(api: TestClient) -> None:
    entries = [
        agent_log_entry(
            "dev-e-node",
            "info",
            "picked up acme/app#12",
            "2026-12-01T07:00:00.000Z",
            repo="acme/app",
            issueNumber=12,
        ),
        agent_log_entry("dev-e-node", "progress", "running tests", "2026-12-01T07:00:01.500Z"),
        agent_log_entry("dev-e-node", "cli-stderr", "npm WARN deprecated", "2026-12-01T07:00:02Z"),
    ]
    answer = await send(api, "/api/agent-logs", batch("dev-e-node", entries), status=202)
    assert answer == {"accepted": 3, "dropped": 0}

    seen = await read(api, "/api/agent-logs?agentId=dev-e-node")
    assert [line["message"] for line in seen["entries"]] == [
        "npm WARN deprecated",
        "running tests",
        "picked up acme/app#12",
    ]
    oldest = seen["entries"][-1]
    assert oldest["level"] == "info"
    assert oldest["repo"] == "acme/app" and oldest["issueNumber"] == 12
    assert oldest["ts"].startswith("2026-12-01T07:00:00")
    assert (await read(api, "/api/agent-logs?agentId=review-e"))["entries"] == []


async def test_a_bad_line_costs_only_itself(api: TestClient) -> None:
    long = "x" * (agent_logs.MAX_TEXT + 10)
    entries = [
        agent_log_entry("dev-e-node", "info", "fine", "not a time"),
        "not an object",
        agent_log_entry("dev-e-node", "info", "a NUL \x00 in it", "2026-12-01T07:00:00Z"),
        agent_log_entry("dev-e-node", "warn", long, "2026-12-01T07:00:00Z"),
        agent_log_entry("dev-e-node", "info", {"structured": True}, "2026-12-01T07:00:00Z"),
    ]
    answer = await send(api, "/api/agent-logs", batch("dev-e-node", entries), status=202)
    assert answer == {"accepted": 4, "dropped": 1}
    lines = (await read(api, "/api/agent-logs?agentId=dev-e-node"))["entries"]
    assert lines[0]["message"] == '{"structured": true}'
    assert len(lines[1]["message"]) == agent_logs.MAX_TEXT
    assert lines[1]["message"].endswith(agent_logs.CUT)
    assert lines[2]["message"] == "a NUL \ufffd in it"
    assert lines[3]["message"] == "fine" and lines[3]["ts"] is None


async def test_each_agent_keeps_its_newest_lines(api: TestClient, monkeypatch) -> None:
    monkeypatch.setattr(agent_logs, "KEEP_PER_AGENT", 5)
    for flush in range(3):
        entries = [
            agent_log_entry("dev-e-node", "info", f"{flush}.{n}", "2026-12-01T07:00:00Z")
            for n in range(3)
        ]
        await send(api, "/api/agent-logs", batch("dev-e-node", entries), status=202)
    await send(
        api,
        "/api/agent-logs",
        batch("review-e", [agent_log_entry("review-e", "info", "other", "2026-12-01T07:00:00Z")]),
        status=202,
    )
    lines = (await read(api, "/api/agent-logs?agentId=dev-e-node&limit=100"))["entries"]
    assert [line["message"] for line in lines] == ["2.2", "2.1", "2.0", "1.2", "1.1"]
    assert len((await read(api, "/api/agent-logs?agentId=review-e"))["entries"]) == 1


async def test_what_would_corrupt_is_refused_and_nothing_is_kept(api: TestClient) -> None:
    for body, field in [
        ({"entries": []}, "agentId"),
        ({"agentId": "dev-e-1\n", "entries": []}, "agentId"),
        ({"agentId": "dev-e-node", "entries": {"a": 1}}, "entries"),
        ([], "object"),
    ]:
        answer = await send(api, "/api/agent-logs", body, status=400)
        assert field in answer["message"], answer
    assert (await read(api, "/api/agent-logs?agentId=dev-e-node"))["entries"] == []
