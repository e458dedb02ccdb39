"""The #conductor-e summary: facts computed in code, words from a cheap model only on change.

`Facts` is what the loop knows after a run, and its digest says whether anything worth saying
changed; `Summariser.write()` turns facts into text, the model's or a deterministic template's.
People get a short status when there is news, and a model call is paid for only then.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any, Protocol

from bot.context import AppContext
from bot.integrations.anthropic_messages import (
    AnthropicError,
    AnthropicUnauthorized,
    AnthropicUnavailable,
    Completion,
)
from bot.services.costs.pricing import Pricing
from bot.services.health.components import ANTHROPIC, rejected
from store.catalogue import stream_for, validate
from store.events import AppendResult, NewEvent

log = logging.getLogger(__name__)

CONDUCTOR_AGENT = "conductor-e"  # the agent id of Conductor-E's own model calls

MAX_TOKENS = 400
LISTED = 5  # issues named per section of the prompt and the template

SYSTEM_PROMPT = (
    "You write the status update Conductor-E posts to the #conductor-e Discord channel, "
    "where people follow a fleet of AI coding agents (Dev-E implements issues, Review-E "
    "reviews pull requests). You get the facts as JSON. Write at most 8 short lines of "
    "Discord markdown, under 900 characters: lead with what needs a person (escalated or "
    "stuck work, components down), then what changed, then the queue. Use only the facts "
    "given; never invent issues, numbers or names. No greeting, no sign-off, no @mentions."
)


class Completer(Protocol):
    """What the summariser needs from the Messages API (bot.integrations.anthropic_messages)."""

    async def complete(
        self, system: str, prompt: str, model: str, max_tokens: int
    ) -> Completion: ...


@dataclass(frozen=True)
class IssueFact:
    stream_id: str
    title: str | None = None
    priority: str | None = None
    state: str | None = None
    agent: str | None = None


@dataclass
class Facts:
    """What the summary says. Snapshot fields go into the digest; deltas do not."""

    # --- the state of the work (in the digest) ---------------------------------------------
    queue_depth: dict[str, int] = field(default_factory=dict)
    queued: list[str] = field(default_factory=list)  # every queued stream id, queue order
    active: list[IssueFact] = field(default_factory=list)  # assigned/in progress/review/deploy
    escalated: list[IssueFact] = field(default_factory=list)
    awaiting_review: list[str] = field(default_factory=list)
    health: dict[str, bool] = field(default_factory=dict)  # component → up
    github: str = "off"  # ok | incomplete | failed | off | skipped
    # Queued issues no agent can take ("owner/repo#N: why") and broken .rig-agent.yaml files
    # ("owner/repo: why"): routing problems a person must fix.
    unroutable: list[str] = field(default_factory=list)
    broken_configs: list[str] = field(default_factory=list)
    # Held issues ("owner/repo#N held by who: why") and paused agents ("agent by who: why"):
    # steering a person did, which stops work until undone.
    held: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    # --- deltas and detail (not in the digest) ----------------------------------------------
    top_of_queue: list[IssueFact] = field(default_factory=list)
    approved_since: list[str] = field(default_factory=list)
    done_since: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    newly_escalated: list[str] = field(default_factory=list)
    # Today's spend from the cost ledger (the figure /cost shows), and what it rests on.
    spend_today_usd: Decimal | None = None
    spend_basis: str = "priced"

    def snapshot(self) -> dict[str, Any]:
        return {
            "queue_depth": {k: v for k, v in sorted(self.queue_depth.items()) if v},
            "queued": list(self.queued),
            "active": sorted(
                [[i.stream_id, i.state, i.agent] for i in self.active], key=lambda r: str(r)
            ),
            "escalated": sorted(i.stream_id for i in self.escalated),
            "awaiting_review": sorted(self.awaiting_review),
            "health": dict(sorted(self.health.items())),
            "github": self.github,
            "unroutable": sorted(self.unroutable),
            "broken_configs": sorted(self.broken_configs),
            "held": sorted(self.held),
            "paused": sorted(self.paused),
        }

    def digest(self) -> str:
        """A hash of the state of the work: equal digests mean nothing worth saying changed.

        Deltas (approved or done since the last summary) stay out: a delta always shows in the
        state too, and hashing it would cost every change two summaries, one when it happens and
        one when the delta drops back to zero. Nothing volatile (latencies, times) goes in either.
        """
        canonical = json.dumps(self.snapshot(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def for_prompt(self) -> dict[str, Any]:
        """The facts the model sees: counts, and a few named issues per section."""

        def few(items: list[Any]) -> list[Any]:
            return [asdict(i) if isinstance(i, IssueFact) else i for i in items[:LISTED]]

        return {
            "queue": {
                "total": sum(self.queue_depth.values()),
                "by_priority": self.queue_depth,
                "next": few(self.top_of_queue),
            },
            "active": {"count": len(self.active), "issues": few(self.active)},
            "escalated_waiting_for_a_person": {
                "count": len(self.escalated),
                "issues": few(self.escalated),
            },
            "prs_waiting_for_a_reviewer": few(self.awaiting_review),
            "since_last_summary": {
                "approved": {"count": len(self.approved_since), "issues": few(self.approved_since)},
                "done": {"count": len(self.done_since), "issues": few(self.done_since)},
            },
            "this_run": {
                "stuck": few(self.stuck),
                "requeued": few(self.requeued),
                "escalated": few(self.newly_escalated),
            },
            "components_down": sorted(name for name, up in self.health.items() if not up),
            "github_sync": self.github,
            "spend_today_usd": None
            if self.spend_today_usd is None
            else float(round(self.spend_today_usd, 2)),
            "held_by_a_person": few(self.held),
            "paused_agents": few(self.paused),
            "routing_problems": {
                "issues_no_agent_can_take": few(self.unroutable),
                "broken_rig_agent_yaml": few(self.broken_configs),
            },
        }


@dataclass(frozen=True)
class Summary:
    """A summary's text and how it was written."""

    text: str
    digest: str
    source: str  # "model" | "template"
    model_error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal | None = None
    usage_recorded: bool = False


def _issue_line(fact: IssueFact) -> str:
    parts = [fact.stream_id]
    if fact.title:
        parts.append(f"— {fact.title[:80]}")
    extra = ", ".join(x for x in (fact.priority, fact.state, fact.agent) if x)
    if extra:
        parts.append(f"({extra})")
    return " ".join(parts)


def _names(ids: list[str]) -> str:
    shown = ", ".join(ids[:LISTED])
    return shown + (f" and {len(ids) - LISTED} more" if len(ids) > LISTED else "")


def template(facts: Facts) -> str:
    """The deterministic summary: posted without a model key or when the model fails."""
    lines = ["**Conductor-E status**"]
    down = sorted(name for name, up in facts.health.items() if not up)
    if down:
        lines.append(f"⚠️ Down: {', '.join(down)}")
    if facts.github in ("failed", "incomplete"):
        lines.append(f"⚠️ GitHub sync {facts.github}")
    if facts.escalated:
        lines.append(
            f"🚨 Escalated, waiting for a person: {_names([i.stream_id for i in facts.escalated])}"
        )
    if facts.stuck:
        lines.append(f"⏳ Stuck this run: {_names(facts.stuck)}")
    if facts.awaiting_review:
        lines.append(f"👀 PRs waiting for a reviewer: {_names(facts.awaiting_review)}")
    if facts.unroutable:
        lines.append(f"🚫 No agent can take: {_names(facts.unroutable)}")
    if facts.broken_configs:
        lines.append(f"🛠️ Broken .rig-agent.yaml: {_names(facts.broken_configs)}")
    if facts.held:
        lines.append(f"⏸️ Held: {_names(facts.held)}")
    if facts.paused:
        lines.append(f"⏸️ Paused agents: {_names(facts.paused)}")
    total = sum(facts.queue_depth.values())
    by_priority = ", ".join(
        f"{facts.queue_depth[p]} {p}"
        for p in ("critical", "high", "normal")
        if facts.queue_depth.get(p)
    )
    lines.append(f"Queue: {total}" + (f" ({by_priority})" if by_priority else ""))
    for fact in facts.top_of_queue[:3]:
        lines.append(f"• next: {_issue_line(fact)}")
    lines.append(f"Active: {len(facts.active)}")
    for fact in facts.active[:LISTED]:
        lines.append(f"• {_issue_line(fact)}")
    if facts.approved_since:
        lines.append(f"New since last summary: {_names(facts.approved_since)}")
    if facts.done_since:
        lines.append(f"Done since last summary: {_names(facts.done_since)}")
    if facts.spend_today_usd:
        partly = " (some usage has no price)" if facts.spend_basis != "priced" else ""
        lines.append(f"Spend today: ${facts.spend_today_usd:,.2f}{partly}")
    return "\n".join(lines)


class Summariser:
    """Writes the summary text; never fails because of the model."""

    def __init__(
        self,
        context: AppContext,
        completer: Completer | None,
        *,
        pricing: Pricing | None = None,
    ) -> None:
        self.context = context
        self.completer = completer
        self.pricing = pricing

    async def write(self, facts: Facts, *, use_model: bool = True) -> Summary:
        """The summary for `facts`: the model's words when configured and `use_model`, else
        (or on any model error) the template. Each call tells the component states whether
        Anthropic answered; a rejected key stops the model calls until a restart. A model
        call's usage is recorded as TOKEN_USAGE for `conductor-e`; if that record fails the text
        is still returned."""
        digest = facts.digest()
        components = self.context.components
        if self.completer is None or not use_model or components.is_stopped(ANTHROPIC):
            return Summary(template(facts), digest, "template")
        model = self.context.settings.summary_model
        prompt = json.dumps(facts.for_prompt(), indent=1, ensure_ascii=False)
        try:
            completion = await self.completer.complete(SYSTEM_PROMPT, prompt, model, MAX_TOKENS)
        except AnthropicError as exc:
            if isinstance(exc, AnthropicUnauthorized):
                components.stopped(ANTHROPIC, rejected("ANTHROPIC_API_KEY", "Anthropic"))
            elif isinstance(exc, AnthropicUnavailable):
                components.down(ANTHROPIC, str(exc))
            log.warning("summary: model call failed (%s); posting the template", exc)
            return Summary(template(facts), digest, "template", model_error=str(exc))
        except Exception as exc:
            # Whatever else goes wrong in the model call, the summary still gets out.
            log.warning("summary: model call failed (%s); posting the template", type(exc).__name__)
            return Summary(template(facts), digest, "template", model_error=type(exc).__name__)

        components.up(ANTHROPIC)
        recorded = False
        try:
            await record_completion_usage(self.context, completion, pricing=self.pricing)
            recorded = True
        except Exception as exc:
            log.error("summary: could not record the model's token usage (%s)", type(exc).__name__)
        cost = completion_cost(self.context, completion, self.pricing)
        text = completion.text.strip()
        if not text:
            return Summary(
                template(facts),
                digest,
                "template",
                model_error="the model returned no text",
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
                cost_usd=cost,
                usage_recorded=recorded,
            )
        return Summary(
            text,
            digest,
            "model",
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            cost_usd=cost,
            usage_recorded=recorded,
        )


def completion_cost(
    context: AppContext, completion: Completion, pricing: Pricing | None = None
) -> Decimal | None:
    """USD for one completion at today's price, as `record_completion_usage` records it;
    None when the model has no price."""
    table = pricing or context.pricing
    write_1h = min(completion.cache_creation_1h_tokens, completion.cache_creation_tokens)
    return table.cost(
        completion.model,
        context.clock().astimezone(UTC).date(),
        completion.input_tokens,
        completion.output_tokens,
        completion.cache_read_tokens,
        completion.cache_creation_tokens - write_1h,
        write_1h,
    )


async def record_completion_usage(
    context: AppContext,
    completion: Completion,
    *,
    repo: str | None = None,
    issue_number: int | None = None,
    pricing: Pricing | None = None,
) -> AppendResult:
    """Record Conductor-E's own model call as TOKEN_USAGE of agent `conductor-e`.

    `costUsd` is our computed cost at today's price; it is left out (cost unknown) when the
    model has no price, never sent as 0. The message id makes a retried record a no-op.
    """
    table = pricing or context.pricing
    day = context.clock().astimezone(UTC).date()
    write_1h = min(completion.cache_creation_1h_tokens, completion.cache_creation_tokens)
    computed = table.cost(
        completion.model,
        day,
        completion.input_tokens,
        completion.output_tokens,
        completion.cache_read_tokens,
        completion.cache_creation_tokens - write_1h,
        write_1h,
    )
    payload: dict[str, Any] = {
        "agentId": CONDUCTOR_AGENT,
        "model": completion.model,
        "inputTokens": completion.input_tokens,
        "outputTokens": completion.output_tokens,
        "cacheReadTokens": completion.cache_read_tokens,
        "cacheCreationTokens": completion.cache_creation_tokens,
        "cacheCreation1hTokens": write_1h,
    }
    if computed is not None:
        payload["costUsd"] = float(round(computed, 8))
    else:
        log.warning("no price for model %r: its cost is recorded as unknown", completion.model)
    if repo is not None and issue_number is not None:
        payload["repo"] = repo
        payload["issueNumber"] = issue_number
    data = validate("TOKEN_USAGE", payload)
    key = f"usage:{CONDUCTOR_AGENT}:{completion.message_id}" if completion.message_id else None
    return await context.store.append(
        stream_for("TOKEN_USAGE", data),
        [NewEvent("TOKEN_USAGE", data, {"source": "conductor-e"})],
        idempotency_key=key,
    )
