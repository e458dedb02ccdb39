"""What one coordination run found and did: RunResult, its record (the payload of
COORDINATION_RUN_COMPLETED/_FAILED) and the one line `conductor-e coordinate --once` prints.

Exit codes: 0 when the run succeeded *or* was skipped because another run holds the lock (an
overlap is not a failure; the line says "skipped"), 1 when it failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
MAX_LISTED = 100  # stream ids per list in the run record


@dataclass
class RunResult:
    """What one run found and did. `ok` False means a step failed (see `errors`)."""

    run_id: str
    started_at: datetime
    dry_run: bool = False
    skipped: bool = False
    duration_ms: int = 0
    health: dict[str, bool] = field(default_factory=dict)
    health_ok: bool | None = None
    queue_depth: dict[str, int] = field(default_factory=dict)
    github: str = "off"  # ok | incomplete | failed | off | skipped | stopped
    github_found: int = 0
    github_requests: int = 0
    approved: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    reprioritised: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    awaiting_review: list[str] = field(default_factory=list)
    # posted | unchanged | pending | printed | off | not reached
    budget_alerts: list[str] = field(default_factory=list)
    config_changed: list[str] = field(default_factory=list)  # repos whose config changed
    config_invalid: list[str] = field(default_factory=list)  # repos whose file broke
    unroutable: list[str] = field(default_factory=list)  # queued issues no agent can take
    summary: str = "not reached"
    summary_text: str | None = None
    summary_source: str | None = None  # model | template
    summaries_posted: int = 0
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    appended: int = 0
    recorded: bool = False
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        """0 on success or a skip (another run holds the lock), 1 on failure."""
        return EXIT_OK if self.ok else EXIT_FAILED


def _capped(ids: Sequence[str]) -> list[str]:
    return list(ids[:MAX_LISTED])


def run_record(result: RunResult) -> dict[str, Any]:
    """The payload of COORDINATION_RUN_COMPLETED/_FAILED: what the run found and did.

    A failed run also carries `error`, the errors in one line: the #admin alert quotes it."""
    record: dict[str, Any] = {
        "runId": result.run_id,
        "startedAt": result.started_at.isoformat(),
        "durationMs": result.duration_ms,
        "health": result.health,
        "healthOk": result.health_ok,
        "queueDepth": result.queue_depth,
        "github": result.github,
        "githubFound": result.github_found,
        "githubRequests": result.github_requests,
        "approved": _capped(result.approved),
        "withdrawn": _capped(result.withdrawn),
        "reprioritised": _capped(result.reprioritised),
        "stuck": _capped(result.stuck),
        "requeued": _capped(result.requeued),
        "escalated": _capped(result.escalated),
        "awaitingReview": _capped(result.awaiting_review),
        "budgetAlerts": _capped(result.budget_alerts),
        "configChanged": _capped(result.config_changed),
        "configInvalid": _capped(result.config_invalid),
        "unroutable": _capped(result.unroutable),
        "summary": result.summary,
        "summarySource": result.summary_source,
        "summariesPosted": result.summaries_posted,
        "modelCalls": result.model_calls,
        "inputTokens": result.input_tokens,
        "outputTokens": result.output_tokens,
        "costUsd": float(result.cost_usd),
        "appended": result.appended,
        "errors": [e[:1_000] for e in result.errors[:20]],
        "notes": [n[:1_000] for n in result.notes[:20]],
    }
    if result.errors:
        record["error"] = one_line("; ".join(result.errors))[:1_000]
    return record


def format_line(result: RunResult) -> str:
    """The one line `conductor-e coordinate --once` prints on stdout."""
    seconds = f"{result.duration_ms / 1000:.2f}s"
    if result.skipped:
        return f"coordination skipped in {seconds}: another run holds the lock"
    head = "coordination dry run" if result.dry_run else "coordination"
    status = "ok" if result.ok else "FAILED"
    parts = [f"{head} {status} in {seconds}"]
    if result.health_ok is not None:
        down = sorted(name for name, up in result.health.items() if not up)
        parts.append("health ok" if not down else f"down: {', '.join(down)}")
    if result.github in ("ok", "incomplete"):
        parts.append(
            f"github{' (incomplete)' if result.github == 'incomplete' else ''} "
            f"{result.github_found} found, {len(result.approved)} approved, "
            f"{len(result.withdrawn)} withdrawn, {len(result.reprioritised)} reprioritised "
            f"in {result.github_requests} requests"
        )
    else:
        parts.append(f"github {result.github}")
    depth = result.queue_depth
    by = ", ".join(f"{depth[p]} {p}" for p in ("critical", "high", "normal") if depth.get(p))
    parts.append(f"queue {sum(depth.values())}" + (f" ({by})" if by else ""))
    parts.append(
        f"stuck {len(result.stuck)} ({len(result.requeued)} requeued, "
        f"{len(result.escalated)} escalated)"
    )
    summary = f"summary {result.summary}"
    if result.summary_source == "model":
        summary += f" ({result.model_calls} model call, ${result.cost_usd:.4f})"
    elif result.summary_source:
        summary += f" ({result.summary_source})"
    parts.append(summary)
    parts.append("nothing appended" if result.dry_run else f"{result.appended} events appended")
    if result.errors:
        parts.append("errors: " + " | ".join(result.errors))
    return one_line("; ".join(parts))


def one_line(text: str) -> str:
    return " ".join(text.split())
