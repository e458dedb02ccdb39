"""The requests the agent runtime sends, built as its source builds them.

The runtime is public: github.com/Stig-Johnny/automate-e. Each builder names the file and the
commit it copies; the body is the object that file passes to JSON.stringify (a field the
JavaScript leaves `undefined` is absent, as JSON.stringify leaves it out).
"""

from __future__ import annotations

from typing import Any

RUNTIME = "Stig-Johnny/automate-e"
HEARTBEAT_JS = "src/heartbeat.js@edc062c15bd787e6bd8a170600d24a1ed9efb307"
HEARTBEAT_JS_PLAIN_ID = "src/heartbeat.js@4e6e83ed3b8dd3056904b2aa41477a763bf8fd39"
AGENT_HEARTBEAT_JS = "src/agent-heartbeat.js@1279c8d7505c1a212fe2cea274f158367041e493"
CONDUCTOR_JS = "src/conductor.js@7d1c6fa2e2e8633a36e91c80b46446a4b0bcc495"
CONDUCTOR_JS_NO_CATEGORY = "src/conductor.js@1b660fc4c54b8e0370713a07a788a73eaa8223fc"
USAGE_JS = "src/usage.js@04ba976d4dd6a57d4413ae6dd01513034155bb6d"
STREAM_CONSUMER_JS = "src/stream-consumer.js@059e73e716f841862e4a33624fb4ff3e695606a9"
AGENT_LOG_JS = "src/agent-log.js@35a5c28285fdda69f43553a7648455e5d0f2fff6"

# Every request carries `Content-Type: application/json` and nothing else (no token).
HEADERS = {"Content-Type": "application/json"}


def heartbeat(
    agent_id: str,
    status: str = "idle",
    issue: int | None = None,
    repo: str | None = None,
    *,
    snapshot: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """heartbeat.js `send()`: status starts 'idle'; `setStatus(status, issue, repo)` changes it.
    With edc062c the agentId is `${agentId}/${HOSTNAME.slice(-5)}`."""
    snapshot = snapshot or {}
    return {
        "type": "HEARTBEAT",
        "agentId": agent_id,
        "status": status,
        "currentIssue": issue,
        "currentRepo": repo,
        "activeProvider": snapshot.get("activeProvider") or None,
        "availableProviders": snapshot.get("availableProviders") or [],
        "providers": snapshot.get("providers") or [],
        "integrations": snapshot.get("integrations") or [],
    }


def snapshot() -> dict[str, Any]:
    """agent-heartbeat.js `buildHeartbeatSnapshot()` for a claude-cli agent with an MCP server."""
    return {
        "activeProvider": "claude-cli",
        "availableProviders": ["claude-cli", "codex-cli"],
        "providers": [
            {
                "name": "claude-cli",
                "status": "ready",
                "details": "using Claude Code OAuth token",
                "active": True,
            },
            {
                "name": "codex-cli",
                "status": "missing_auth",
                "details": "no auth file",
                "active": False,
            },
        ],
        "integrations": [
            {"name": "discord", "status": "degraded", "details": "bot is not connected"},
            {
                "name": "conductor",
                "status": "configured",
                "details": "http://conductor-e-api:8080/api/events",
            },
            {"name": "mcp:github", "status": "unknown", "details": None},
            {"name": "github", "status": "configured", "details": "GITHUB_TOKEN configured"},
        ],
    }


def token_usage(
    agent_id: str,
    *,
    model: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cost_usd: float | None = None,
    repo: str | None = None,
    issue_number: int | None = None,
    env_repo: str | None = None,
    env_issue: str | None = None,
    category: str | None = None,
    with_category: bool = True,
) -> dict[str, Any]:
    """conductor.js `reportTokenUsage()`: repo falls back to CONDUCTOR_REPO then "", the issue
    to parseInt(CONDUCTOR_ISSUE_NUMBER || '0') (NaN → null), the model to "", numbers to 0.
    `with_category` False is the older conductor.js (1b660fc) that sent no category."""
    resolved_repo = repo or env_repo or ""
    if issue_number is not None:
        resolved_issue: int | None = issue_number
    else:
        raw = env_issue or "0"
        resolved_issue = int(raw) if raw.strip().lstrip("-").isdigit() else None
    body: dict[str, Any] = {
        "type": "TOKEN_USAGE",
        "agentId": agent_id,
        "repo": resolved_repo,
        "issueNumber": resolved_issue,
        "model": model or "",
        "inputTokens": input_tokens or 0,
        "outputTokens": output_tokens or 0,
        "costUsd": cost_usd or 0,
    }
    if with_category:
        body["category"] = category or ""
    return body


def stale_cost(model: str, input_tokens: int, output_tokens: int) -> float:
    """usage.js `trackUsage()`'s costUsd: its own (stale) per-million price list."""
    prices = {
        "claude-haiku-4-5-20251001": (0.25, 1.25),
        "claude-sonnet-4-6": (3, 15),
        "claude-opus-4-6": (15, 75),
    }
    rate_in, rate_out = prices.get(model, (1, 5))
    return input_tokens * rate_in / 1_000_000 + output_tokens * rate_out / 1_000_000


# --- stream-consumer.js: one assignment's execution log, review verdicts, merge --------------


def execution_log_create(
    repo: str, issue_number: str, agent_id: str, model: str | None
) -> dict[str, Any]:
    """The create body; the assignment's fields are strings (Redis stream entry)."""
    return {
        "repo": repo,
        "issueNumber": int(issue_number),
        "agentId": agent_id,
        "status": "running",
        "model": model or "unknown",
        "steps": [{"type": "assigned", "status": "completed", "detail": f"Assigned to {agent_id}"}],
    }


def implement_step(response: dict[str, Any]) -> dict[str, Any]:
    """logStep('implement', 'completed', implementDetail, response.costUsd, response.turns)."""
    text = response["text"]
    detail = "\n".join(
        part
        for part in (
            text[:300],
            f"Duration: {response['durationMs'] / 1000:.1f}s "
            f"(API: {response['durationApiMs'] / 1000:.1f}s)",
            f"Tokens: {response['inputTokens']} in / {response['outputTokens']} out / "
            f"{response['cacheReadTokens']} cache-read / {response['cacheCreationTokens']} "
            "cache-write",
        )
        if part
    )
    step: dict[str, Any] = {"type": "implement", "status": "completed", "detail": detail}
    if "costUsd" in response:
        step["costUsd"] = response["costUsd"]
    if "turns" in response:
        step["turns"] = response["turns"]
    return step


def model_usage_lines(response: dict[str, Any], timestamp: str) -> list[dict[str, Any]]:
    """The /logs body: one line per model of response.modelUsage."""
    return [
        {
            "timestamp": timestamp,
            "level": "info",
            "message": (
                f"Model {model}: {u.get('inputTokens', 0)} in / {u.get('outputTokens', 0)} out, "
                f"cache {u.get('cacheReadInputTokens', 0)} read / "
                f"{u.get('cacheCreationInputTokens', 0)} write, ${u.get('costUSD', 0):.4f}"
            ),
        }
        for model, u in response["modelUsage"].items()
    ]


def completion(response: dict[str, Any], pr_number: int | None) -> dict[str, Any]:
    return {
        "status": "completed",
        "totalCostUsd": response.get("costUsd") or 0,
        "totalTurns": response.get("turns") or 0,
        "totalInputTokens": response.get("inputTokens") or 0,
        "totalOutputTokens": response.get("outputTokens") or 0,
        "cacheReadTokens": response.get("cacheReadTokens") or 0,
        "cacheCreationTokens": response.get("cacheCreationTokens") or 0,
        "durationApiMs": response.get("durationApiMs") or 0,
        "prNumber": pr_number,
    }


def failed_step(message: str) -> dict[str, Any]:
    """logStep('implement', 'failed', err.message): costUsd and turns undefined."""
    return {"type": "implement", "status": "failed", "detail": message}


FAILED = {"status": "failed"}


def review_verdict(event_type: str, repo: str, pr: str, agent_id: str) -> dict[str, Any]:
    """Review-E's verdict: issueNumber IS the PR number for review assignments."""
    return {
        "type": event_type,
        "repo": repo,
        "issueNumber": int(pr),
        "agentId": agent_id,
        "prNumber": int(pr),
    }


def merge_request(repo: str, pr: str) -> dict[str, Any]:
    return {"repo": repo, "prNumber": int(pr)}


def agent_log_entry(
    agent_id: str, level: str, message: str, ts: str, **meta: Any
) -> dict[str, Any]:
    """agent-log.js `publishLog(level, message, meta)`: `{ts, agentId, level, message, ...meta}`
    (meta: repo, issueNumber, ...)."""
    return {"ts": ts, "agentId": agent_id, "level": level, "message": message, **meta}


def agent_logs(agent_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """agent-log.js `flushLogs()`: every 2 s, `POST /api/agent-logs {agentId, entries}`."""
    return {"agentId": agent_id, "entries": entries}
