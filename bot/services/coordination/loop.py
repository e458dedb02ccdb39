"""The coordination loop: one run, every five minutes, beside the bot or from a CronJob.

A run catches up on whatever webhooks and agents left unsaid: it brings the store in step with
GitHub, deals with stuck work and crossed budgets, asks the merge gate about every PR it
follows, and posts a summary of the work only when the work changed. What a run found and did
is its RunResult (coordination/result.py).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.context import AppContext
from bot.integrations.discord_webhook import WebhookError, WebhookResult
from bot.integrations.github import GitHubUnavailable
from bot.services.coordination.result import RunResult, run_record
from bot.services.coordination.stuck import StuckDetector, StuckReport
from bot.services.coordination.summary import Facts, IssueFact, Summariser
from bot.services.costs.budgets import check_budgets
from bot.services.costs.ledger import CostService
from bot.services.health.checks import ComponentHealth, HealthService
from bot.services.health.components import ANTHROPIC, GITHUB, rejected
from bot.services.merge_gate.gate import MergeGate
from bot.services.work.repo_config import RepoConfigService
from bot.services.work.routing import RoutingService
from store import catalogue
from store.errors import StoreError
from store.events import NewEvent
from store.locks import COORDINATION_RUN_LOCK, try_run_lock
from store.projections import Agent, Issue

log = logging.getLogger(__name__)

STATE_KEY = "coordination.summary"
METADATA = {"actor": "conductor-e", "source": "coordination"}
ACTIVE_STATES = ("assigned", "in_progress", "in_review", "deploying")
MAX_PENDING = 24  # summaries kept while the webhook is down (two hours of changes)
MAX_DELTA = 500  # events read for "approved/done since the last summary"
MAX_ISSUES = 5_000


class SyncOutcome(Protocol):
    """What the loop reads from a sync (bot.services.github.sync.SyncResult)."""

    approved: list[str]
    withdrawn: list[str]
    reprioritised: list[str]
    configs_changed: list[str]
    configs_invalid: list[str]
    found: int
    requests: int
    incomplete: bool
    reasons: list[str]
    unavailable: str | None
    unauthorized: bool
    errors: list[str]


class Syncer(Protocol):
    """The GitHub side (bot.services.github.sync.SyncService)."""

    async def run(self) -> SyncOutcome: ...


class Poster(Protocol):
    """Where summaries go (bot.integrations.discord_webhook.DiscordWebhook)."""

    async def post(self, text: str, *, skip: int = 0) -> WebhookResult: ...


def _describe(exc: BaseException) -> str:
    # Store errors are written to be shown; anything else by type only (its text may carry a
    # DSN or a URL with a token in it).
    if isinstance(exc, StoreError):
        return str(exc)
    return type(exc).__name__


class CoordinationService:
    """The coordination loop's one implementation; `run()` is one pass."""

    def __init__(
        self,
        context: AppContext,
        syncer: Syncer | None,
        summariser: Summariser,
        poster: Poster | None,
        *,
        health: HealthService,
        stuck: StuckDetector,
        routing: RoutingService,
        merge_gate: MergeGate,
        costs: CostService,
        configs: RepoConfigService | None = None,
    ) -> None:
        self.context = context
        self.syncer = syncer
        self.summariser = summariser
        self.poster = poster
        self.health = health
        self.stuck = stuck
        self.routing = routing
        self.merge_gate = merge_gate
        self.costs = costs
        self.configs = configs

    async def run(self, dry_run: bool = False) -> RunResult:
        """One coordination pass, under an advisory lock so that one runs at a time across every
        process and pod (a run that finds it held returns at once, `skipped`).

        Never raises but for cancellation: a database blip, a GitHub outage or a webhook failure
        comes back as a failed RunResult, so whatever loops over `run()` keeps going. A dry run
        appends nothing at all: it reads, judges and prints the template summary.
        """
        result = RunResult(
            run_id=uuid.uuid4().hex, started_at=self.context.clock(), dry_run=dry_run
        )
        started = time.monotonic()
        try:
            async with try_run_lock(self.context.pool, COORDINATION_RUN_LOCK) as taken:
                if not taken:
                    result.skipped = True
                    result.notes.append("another coordination run holds the lock")
                    result.duration_ms = _elapsed_ms(started)
                    return result
                try:
                    await self._run_locked(result, dry_run)
                except Exception as exc:
                    result.errors.append(f"run stopped: {_describe(exc)}")
                    log.error(
                        "coordination run %s stopped: %s",
                        result.run_id,
                        _describe(exc),
                        exc_info=not isinstance(exc, StoreError),
                    )
                result.duration_ms = _elapsed_ms(started)
                if not dry_run:
                    await self._record(result)
                return result
        except Exception as exc:
            # Could not even try the lock: PostgreSQL is down. Nothing can be recorded either.
            result.errors.append(f"could not take the run lock: {_describe(exc)}")
            result.duration_ms = _elapsed_ms(started)
            log.error("coordination run %s: %s", result.run_id, result.errors[-1])
            return result

    # --- the steps --------------------------------------------------------------------------
    async def _run_locked(self, result: RunResult, dry_run: bool) -> None:
        now = self.context.clock()
        report = await self.health.check()
        result.health = {c.name: c.ok for c in report.components}
        self._note_anthropic(report.components)
        result.health_ok = report.ok
        if not report.ok:
            down = ", ".join(c.name for c in report.components if c.critical and not c.ok)
            result.errors.append(f"critical component down: {down}")

        await self._sync(result, dry_run)
        await self._repo_configs(result, dry_run)
        if not dry_run:
            await self._merge_gate(result)

        stuck = StuckReport()
        try:
            stuck = await self.stuck.run(now, dry_run=dry_run)
        except Exception as exc:
            result.errors.append(f"stuck detection failed: {_describe(exc)}")
            log.error(
                "stuck detection failed: %s",
                _describe(exc),
                exc_info=not isinstance(exc, StoreError),
            )
        result.stuck, result.requeued, result.escalated = (
            stuck.stuck,
            stuck.requeued,
            stuck.escalated,
        )
        result.awaiting_review = stuck.awaiting_review
        result.appended += stuck.appended
        result.errors.extend(stuck.errors)
        if stuck.raced:
            result.notes.append(f"left alone (the agent acted meanwhile): {', '.join(stuck.raced)}")
        if dry_run and stuck.stuck:
            result.notes.append("dry run: stuck work found, nothing recorded")

        if not dry_run:
            await self._check_budgets(result, now)

        facts = await self._facts(result, stuck)
        await self._summarise(result, facts, dry_run)

    async def _check_budgets(self, result: RunResult, now: datetime) -> None:
        """Record the budget thresholds crossed today (each once); the bot alerts #admin."""
        try:
            alerts = await check_budgets(self.costs, now)
        except Exception as exc:
            # Checked again next run; each threshold is recorded once whenever it is seen.
            result.notes.append(f"budgets not checked: {_describe(exc)}")
            return
        result.budget_alerts = [alert.text for alert in alerts]
        result.appended += len(alerts)

    def upstream_down(self) -> bool:
        """Whether GitHub or Anthropic is down for this loop: it then retries sooner."""
        components = self.context.components
        return components.is_down(GITHUB) or components.is_down(ANTHROPIC)

    def _note_anthropic(self, probed: Sequence[ComponentHealth]) -> None:
        """Anthropic's state from this run's probe, when the summary model is configured (a
        model call made later in the run has the last word)."""
        if self.summariser.completer is None:
            return
        for component in probed:
            if component.name != ANTHROPIC or component.refused:
                continue  # a refused key is judged by the model call, which names the setting
            if component.ok:
                self.context.components.up(ANTHROPIC)
            else:
                self.context.components.down(ANTHROPIC, component.detail)

    async def _sync(self, result: RunResult, dry_run: bool) -> None:
        if self.syncer is None:
            result.github = "off"
            return
        components = self.context.components
        if components.is_stopped(GITHUB):
            result.github = "stopped"
            result.errors.append(f"GitHub sync stopped: {rejected('GITHUB_TOKEN', 'GitHub')}")
            return
        if dry_run:
            result.github = "skipped"
            result.notes.append("dry run: GitHub sync skipped (the sync has no dry-run mode)")
            return
        try:
            sync = await self.syncer.run()
        except Exception as exc:
            result.github = "failed"
            if isinstance(exc, GitHubUnavailable):
                components.down(GITHUB, exc)
            message = getattr(exc, "message", None) or _describe(exc)
            result.errors.append(f"GitHub sync failed: {message}")
            log.error(
                "coordination: GitHub sync failed: %s",
                message,
                exc_info=not hasattr(exc, "message"),
            )
            return
        if sync.unauthorized:
            components.stopped(GITHUB, rejected("GITHUB_TOKEN", "GitHub"))
        elif sync.unavailable is not None:
            components.down(GITHUB, sync.unavailable)
        else:
            components.up(GITHUB)
        result.github = "incomplete" if sync.incomplete else "ok"
        result.github_found = sync.found
        result.github_requests = sync.requests
        result.approved = list(sync.approved)
        result.withdrawn = list(sync.withdrawn)
        result.reprioritised = list(sync.reprioritised)
        result.config_changed = list(sync.configs_changed)
        result.config_invalid = list(sync.configs_invalid)
        result.appended += len(sync.approved) + len(sync.withdrawn) + len(sync.reprioritised)
        result.appended += len(sync.configs_changed) + len(sync.configs_invalid)
        if sync.incomplete:
            # Some agent-ready issues may have gone unseen (refused, rate-limited, GitHub's
            # own incomplete_results): the run did not do its whole job, so it fails and
            # says why; what it did see is recorded all the same.
            result.errors.append("GitHub sync incomplete: " + "; ".join(sync.reasons))
        if sync.errors:
            result.notes.append(
                f"GitHub sync: {len(sync.errors)} issue(s) not recorded: "
                + "; ".join(sync.errors[:3])
            )

    async def _repo_configs(self, result: RunResult, dry_run: bool) -> None:
        """Re-read the .rig-agent.yaml of every repo we know (conditional: 304s are free)."""
        if self.configs is None or dry_run:
            return
        repos = set(self.context.settings.managed_repos)
        repos.update(c.repo_name for c in await self.context.projections.repo_configs())
        for state in ("queued", *ACTIVE_STATES):
            repos.update(i.repo for i in await self.context.projections.issues(state, MAX_ISSUES))
        try:
            refreshed = await self.configs.refresh(repos)
        except Exception as exc:
            result.notes.append(f"repo configuration not read: {_describe(exc)}")
            return
        result.config_changed.extend(refreshed.changed)
        result.config_invalid.extend(refreshed.invalid)
        result.appended += len(refreshed.changed) + len(refreshed.invalid)
        if refreshed.errors:
            result.notes.append(
                f"repo configuration: {len(refreshed.errors)} repo(s) not read: "
                + "; ".join(refreshed.errors[:3])
            )

    async def _merge_gate(self, result: RunResult) -> None:
        """Ask the merge gate about every followed PR: a missed webhook delays, never loses, a
        merge."""
        try:
            decisions = await self.merge_gate.sweep()
        except Exception as exc:
            result.notes.append(f"merge gate not asked: {_describe(exc)}")
            return
        done = [f"{d.repo}#{d.number} {d.action}" for d in decisions if d.action != "waiting"]
        if done:
            result.notes.append("merge gate: " + ", ".join(done[:10]))

    async def _facts(self, result: RunResult, stuck: StuckReport) -> Facts:
        projections = self.context.projections
        result.queue_depth = await projections.queue_depth()
        queued = await projections.queue(limit=MAX_ISSUES)
        active: list[Issue] = []
        for state in ACTIVE_STATES:
            active.extend(await projections.issues(state=state, limit=MAX_ISSUES))
        failed = await projections.issues(state="failed", limit=MAX_ISSUES)
        today = self.context.clock().astimezone(UTC).date()
        spend = (await self.costs.ledger(today, today)).breakdown().total
        unroutable = await self.routing.unroutable(queued)
        result.unroutable = list(unroutable)
        broken = await self.routing.broken_configs()
        agents = await projections.agents(self.context.clock(), self.context.stale_after)
        return Facts(
            held=[held_line(i) for i in [*queued, *active] if i.held],
            paused=[paused_line(a) for a in agents if a.paused],
            unroutable=[f"{stream}: {why}" for stream, why in unroutable.items()],
            broken_configs=[f"{c.repo_name}: {c.error}" for c in broken],
            queue_depth=dict(result.queue_depth),
            queued=[i.stream_id for i in queued],
            active=[_fact(i) for i in sorted(active, key=lambda i: i.stream_id)],
            escalated=[_fact(i) for i in failed if i.escalated],
            awaiting_review=list(stuck.awaiting_review),
            health=dict(result.health),
            github=result.github,
            top_of_queue=[_fact(i) for i in queued[:5]],
            stuck=list(stuck.stuck),
            requeued=list(stuck.requeued),
            newly_escalated=list(stuck.escalated),
            spend_today_usd=spend.cost_usd,
            spend_basis=spend.basis,
        )

    async def _deltas(self, facts: Facts, since: int | None) -> None:
        """Fill in what was approved and done after position `since` (the last summary)."""
        if since is None:
            return
        store = self.context.store
        approved = await store.read_all(since, MAX_DELTA, types=["ISSUE_APPROVED"])
        done = await store.read_all(since, MAX_DELTA, types=["ISSUE_DONE"])
        facts.approved_since = _unique(e.stream_id for e in approved)
        facts.done_since = _unique(e.stream_id for e in done)

    async def _summarise(self, result: RunResult, facts: Facts, dry_run: bool) -> None:
        """Write a summary only when the facts' digest changed (or news arrived), and post it;
        one the webhook could not take waits in AppState and is posted first next run."""
        state_store = self.context.state
        state: dict[str, Any] = dict(await state_store.get(STATE_KEY, {}) or {})
        pending: list[dict[str, Any]] = list(state.get("pending", []))
        digest = facts.digest()

        if dry_run:
            await self._deltas(facts, state.get("since_position"))
            summary = await self.summariser.write(facts, use_model=False)
            result.summary, result.summary_text, result.summary_source = (
                "printed",
                summary.text,
                summary.source,
            )
            result.notes.append(
                "dry run: the template summary is printed, not posted "
                "(no model call: it would need a TOKEN_USAGE record)"
            )
            return
        if self.poster is None:
            result.summary = "off"
            result.notes.append("DISCORD_WEBHOOK_URL is not set: no summary posted")
            return

        latest = pending[-1]["digest"] if pending else state.get("posted_digest")
        since = pending[-1]["position"] if pending else state.get("since_position")
        # What was approved or finished since the last summary is news even when the queue
        # looks the same again (an issue approved and done between two runs).
        await self._deltas(facts, since if since is not None else 0)
        if digest != latest or facts.approved_since or facts.done_since:
            head = await self.context.store.head_position()
            summary = await self.summariser.write(facts)
            if summary.source == "model" or summary.model_error:
                result.model_calls += 1
            result.input_tokens += summary.input_tokens
            result.output_tokens += summary.output_tokens
            result.cost_usd += summary.cost_usd or 0
            if summary.usage_recorded:
                result.appended += 1
            if summary.model_error:
                result.notes.append(f"model failed ({summary.model_error}): template posted")
            result.summary_text, result.summary_source = summary.text, summary.source
            pending.append(
                {
                    "id": uuid.uuid4().hex,
                    "text": summary.text[:20_000],
                    "digest": digest,
                    "position": head,
                    "source": summary.source,
                    "sent": 0,
                }
            )
            if len(pending) > MAX_PENDING:
                dropped = len(pending) - MAX_PENDING
                log.warning(
                    "summary: webhook down too long, dropping the %d oldest unposted summaries",
                    dropped,
                )
                pending = pending[dropped:]
            state["pending"] = pending
            await state_store.set(STATE_KEY, state)
        elif not pending:
            result.summary = "unchanged"
            return

        for item in list(pending):
            try:
                await self.poster.post(item["text"], skip=item.get("sent", 0))
            except WebhookError as exc:
                item["sent"] = exc.posted
                state["pending"] = pending
                await state_store.set(STATE_KEY, state)
                result.summary = "pending"
                result.errors.append(f"summary not posted, kept for the next run: {exc.message}")
                log.warning("summary: not posted, kept for the next run: %s", exc.message)
                return
            data = catalogue.validate(
                "SUMMARY_POSTED",
                {
                    "text": item["text"],
                    "digest": item["digest"],
                    "source": item["source"],
                    "runId": result.run_id,
                },
                internal=True,
            )
            appended = await self.context.store.append(
                catalogue.SUMMARY_STREAM,
                [NewEvent("SUMMARY_POSTED", data, dict(METADATA))],
                idempotency_key=f"summary:{item['id']}",
            )
            if not appended.duplicate:
                result.appended += 1
            pending.remove(item)
            state.update(
                pending=pending, posted_digest=item["digest"], since_position=item["position"]
            )
            await state_store.set(STATE_KEY, state)
            result.summaries_posted += 1
        result.summary = "posted"

    async def _record(self, result: RunResult) -> None:
        """COORDINATION_RUN_COMPLETED or _FAILED; a failure to record is logged, not raised."""
        event_type = "COORDINATION_RUN_COMPLETED" if result.ok else "COORDINATION_RUN_FAILED"
        try:
            data = catalogue.validate(event_type, run_record(result), internal=True)
            await self.context.store.append(
                catalogue.COORDINATION_STREAM,
                [NewEvent(event_type, data, dict(METADATA))],
                idempotency_key=f"run:{result.run_id}",
            )
            result.recorded = True
        except Exception as exc:
            log.error(
                "coordination run %s could not be recorded: %s", result.run_id, _describe(exc)
            )


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def held_line(issue: Issue) -> str:
    why = f": {issue.held_reason}" if issue.held_reason else ""
    return f"{issue.stream_id} held by {issue.held_by or 'someone'}{why}"


def paused_line(agent: Agent) -> str:
    why = f": {agent.paused_reason}" if agent.paused_reason else ""
    return f"{agent.agent_id} by {agent.paused_by or 'someone'}{why}"


def _fact(issue: Issue) -> IssueFact:
    holder = issue.reviewer if issue.state == "in_review" and issue.reviewer else issue.assignee
    return IssueFact(issue.stream_id, issue.title, issue.priority, issue.state, holder)


def _unique(ids: Any) -> list[str]:
    return list(dict.fromkeys(ids))
