"""What the admin commands check before acting and how their answers look (private module of
cogs/admin.py: not an extension).

The allowlist checks here read the configuration only, so a target that is not allowed is
refused before a Kubernetes client even exists; the service checks again when it acts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

import discord

from bot.errors import InvalidInput
from bot.integrations.kubernetes import (
    FLUX_KINDS,
    DeploymentStatus,
    FluxObjectStatus,
    LogChunk,
    PodInfo,
    flux_kind,
)
from bot.services import audit
from bot.services.audit import AuditEntry
from bot.services.cluster.flux import FluxProgress, FluxReconcileResult
from bot.services.cluster.rollouts import (
    NotAllowed,
    RolloutConfig,
    RolloutProgress,
    RolloutResult,
)
from bot.ui.confirm import Choice
from bot.ui.limits import CONTENT, FIELD_VALUE, chunk_lines, cut, fit_embed
from store.events import RecordedEvent

BLUE = discord.Colour.blurple()
GREEN = discord.Colour.green()
RED = discord.Colour.red()
ORANGE = discord.Colour.orange()
GREY = discord.Colour.light_grey()

STEPS_SHOWN = 8
# Logs shown in the message itself up to this size (in a code block); beyond, a file.
INLINE_LOG_CHARS = CONTENT - 200

OUTCOME_MARK = {
    audit.REQUESTED: "📝",
    audit.CONFIRMED: "☑️",
    audit.DENIED: "⛔",
    audit.CANCELLED: "✖️",
    audit.COMPLETED: "✅",
    audit.FAILED: "❌",
}


def escape(text: str) -> str:
    return discord.utils.escape_markdown(discord.utils.escape_mentions(text))


def code(text: str) -> str:
    """Text for inside `backticks` (where markdown escapes would show)."""
    return text.replace("`", "'")


def actor_of(user_id: int) -> str:
    return f"discord:{user_id}"


def mention(actor: str) -> str:
    kind, _, rest = actor.partition(":")
    return f"<@{rest}>" if kind == "discord" and rest.isdigit() else escape(actor)


def seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{int(value // 60)} min {int(value % 60)} s"


# --- the allowlist, from the configuration only -------------------------------------------------


def check_target(config: RolloutConfig, target: str) -> None:
    if target not in config.rollout_targets:
        allowed = ", ".join(config.rollout_targets) or "none configured"
        raise NotAllowed(
            f"deployment {target!r} is not an allowed rollout target (allowed: {allowed})"
        )


def flux_key(kind: str) -> str:
    """`hr`, `HelmRelease`, `helmrelease` → `helmrelease`; InvalidInput for anything else."""
    try:
        return flux_kind(kind).kind.lower()
    except KeyError:
        raise InvalidInput(f"unknown Flux kind {kind!r} (known: {', '.join(FLUX_KINDS)})") from None


def check_flux(config: RolloutConfig, kind: str, name: str) -> str:
    key = flux_key(kind)
    if f"{key}/{name}" not in config.flux_objects:
        allowed = ", ".join(config.flux_objects) or "none configured"
        raise NotAllowed(f"{key}/{name} is not an allowed Flux object (allowed: {allowed})")
    return key


def components(config: RolloutConfig) -> list[str]:
    return sorted(set(config.components) | set(config.component_selectors))


def check_component(config: RolloutConfig, component: str) -> None:
    known = components(config)
    if component not in known:
        raise NotAllowed(f"unknown component {component!r} (known: {', '.join(known)})")


_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `1h30m`, `1d` (a bare number is minutes)."""
    raw = text.strip().lower().replace(" ", "")
    if raw.isdigit():
        total = int(raw) * 60
    else:
        parts = _DURATION.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise InvalidInput(
                f"since: expected a duration like 30s, 15m, 2h or 1h30m, got {text!r}"
            )
        total = sum(int(n) * _UNIT[u] for n, u in parts)
    if total <= 0:
        raise InvalidInput("since must be a positive duration")
    return timedelta(seconds=total)


# --- confirmation --------------------------------------------------------------------------------


def confirm_embed(title: str, what: str, user_id: int, timeout: float, cid: str) -> discord.Embed:
    embed = discord.Embed(title=title, description=what, colour=ORANGE)
    embed.add_field(name="Requested by", value=f"<@{user_id}>")
    embed.add_field(name="Confirm within", value=seconds(timeout))
    embed.set_footer(text=f"action {cid}")
    return embed


def decided_embed(question: discord.Embed, choice: Choice, timeout: float) -> discord.Embed | None:
    """The question once answered: confirmed (progress follows), cancelled, timed out."""
    if choice is Choice.CONFIRMED:
        embed = question.copy()
        embed.colour = BLUE
        embed.description = f"{question.description}\n\nConfirmed; starting…"
        return embed
    embed = question.copy()
    embed.colour = GREY
    if choice is Choice.CANCELLED:
        embed.description = f"{question.description}\n\n✖️ Cancelled: nothing was done."
    else:
        embed.description = (
            f"{question.description}\n\n⏱️ Not confirmed within {seconds(timeout)}: "
            "nothing was done."
        )
    return embed


# --- rollouts ------------------------------------------------------------------------------------


def replicas_line(d: DeploymentStatus) -> str:
    return (
        f"{d.updated_replicas}/{d.desired_replicas} updated · {d.ready_replicas} ready · "
        f"{d.available_replicas} available"
        + (f" · {d.unavailable_replicas} unavailable" if d.unavailable_replicas else "")
    )


class Steps:
    """The lines of a followed action, newest last, with their elapsed time."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, elapsed: float, message: str) -> None:
        line = f"`{elapsed:5.1f}s` {escape(cut(message, 200))}"
        if not self.lines or self.lines[-1] != line:
            self.lines.append(line)

    def text(self) -> str:
        shown = self.lines[-STEPS_SHOWN:]
        skipped = len(self.lines) - len(shown)
        return ("…\n" if skipped else "") + "\n".join(shown)


def rollout_progress_embed(
    target: str, event: RolloutProgress, steps: Steps, user_id: int, cid: str
) -> discord.Embed:
    embed = discord.Embed(
        title=f"Restarting deployment {target}", description=steps.text(), colour=BLUE
    )
    embed.add_field(name="Replicas", value=replicas_line(event.deployment), inline=False)
    embed.add_field(name="Requested by", value=f"<@{user_id}>")
    embed.add_field(name="Elapsed", value=seconds(event.elapsed))
    embed.set_footer(text=f"action {cid} · {event.requests} Kubernetes requests")
    return fit_embed(embed)


def rollout_done_embed(
    result: RolloutResult, steps: Steps, user_id: int, cid: str
) -> discord.Embed:
    embed = discord.Embed(
        title=f"✅ Restarted deployment {result.target}",
        description=f"{steps.text()}\n\nSuccessfully rolled out in {seconds(result.elapsed)}.",
        colour=GREEN,
    )
    embed.add_field(name="Replicas", value=replicas_line(result.deployment), inline=False)
    embed.add_field(name="Requested by", value=f"<@{user_id}>")
    embed.add_field(name="Took", value=seconds(result.elapsed))
    embed.set_footer(text=f"action {cid} · {result.requests} Kubernetes requests")
    return fit_embed(embed)


def failed_embed(
    title: str, message: str, steps: Steps, elapsed: float, user_id: int, cid: str
) -> discord.Embed:
    body = f"{steps.text()}\n\n" if steps.lines else ""
    embed = discord.Embed(
        title=f"❌ {title}",
        description=f"{body}**{escape(cut(message, 1_500))}**",
        colour=RED,
    )
    embed.add_field(name="Requested by", value=f"<@{user_id}>")
    embed.add_field(name="Took", value=seconds(elapsed))
    embed.set_footer(text=f"action {cid}")
    return fit_embed(embed)


def deployment_embed(d: DeploymentStatus) -> discord.Embed:
    state = d.describe()
    if d.paused:
        colour, mark = ORANGE, "⏸️"
    elif d.deadline_exceeded:
        colour, mark = RED, "❌"
    elif d.complete:
        colour, mark = GREEN, "🟢"
    else:
        colour, mark = ORANGE, "🔄"
    embed = discord.Embed(
        title=f"{mark} deployment {d.name}", description=escape(state), colour=colour
    )
    embed.add_field(name="Replicas", value=replicas_line(d), inline=False)
    embed.add_field(name="Generation", value=f"{d.observed_generation}/{d.generation} observed")
    embed.add_field(name="Paused", value="yes" if d.paused else "no")
    embed.add_field(name="Last restart", value=d.restarted_at or "—")
    for condition in d.conditions:
        detail = condition.reason + (f": {condition.message}" if condition.message else "")
        embed.add_field(
            name=f"{condition.type}: {condition.status}",
            value=cut(escape(detail) or "—", FIELD_VALUE),
            inline=False,
        )
    embed.set_footer(text=f"namespace {d.namespace}")
    return fit_embed(embed)


# --- Flux ----------------------------------------------------------------------------------------


def flux_mark(status: FluxObjectStatus) -> str:
    if status.suspended:
        return "⏸️"
    if status.ready is None:
        return "🔄"
    return "🟢" if status.ready else "🔴"


def flux_status_pages(objects: Sequence[FluxObjectStatus], kind: str | None) -> list[discord.Embed]:
    title = f"Flux {kind}s" if kind else "Flux objects"
    if not objects:
        what = f"no {kind}" if kind else "no Flux object"
        return [
            discord.Embed(
                title=title,
                description=f"CONDUCTOR_FLUX_OBJECTS lists {what}.",
                colour=GREY,
            )
        ]
    lines = []
    for s in objects:
        state = (
            "suspended"
            if s.suspended
            else ("unknown" if s.ready is None else "ready" if s.ready else "not ready")
        )
        revision = f" · `{code(s.revision)}`" if s.revision else ""
        detail = f"\n  ↳ {escape(cut(s.message, 300))}" if s.message else ""
        lines.append(
            f"{flux_mark(s)} **{s.kind.lower()}/{escape(s.name)}** · {state}{revision}{detail}"
        )
    bad = any(s.ready is False for s in objects)
    pages = chunk_lines(lines, per_page=10)
    return [
        fit_embed(
            discord.Embed(title=title, description=text, colour=RED if bad else GREEN).set_footer(
                text=f"Page {i + 1} of {len(pages)} · {len(objects)} objects"
            )
        )
        for i, text in enumerate(pages)
    ]


def flux_progress_embed(
    key: str, name: str, event: FluxProgress, steps: Steps, user_id: int, cid: str
) -> discord.Embed:
    embed = discord.Embed(title=f"Reconciling {key}/{name}", description=steps.text(), colour=BLUE)
    embed.add_field(name="Now", value=f"{event.kind.lower()}/{escape(event.name)}")
    embed.add_field(name="Revision", value=escape(event.revision or "—"))
    embed.add_field(name="Requested by", value=f"<@{user_id}>")
    embed.add_field(name="Elapsed", value=seconds(event.elapsed))
    embed.set_footer(text=f"action {cid} · {event.requests} Kubernetes requests")
    return fit_embed(embed)


def flux_done_embed(
    result: FluxReconcileResult, steps: Steps, user_id: int, cid: str
) -> discord.Embed:
    obj = result.object
    embed = discord.Embed(
        title=f"✅ Reconciled {obj.kind.lower()}/{obj.name}",
        description=f"{steps.text()}\n\n{escape(cut(result.message or 'Ready', 500))}",
        colour=GREEN,
    )
    embed.add_field(name="Revision", value=escape(result.revision or "—"))
    if result.source is not None:
        embed.add_field(
            name=f"Source {result.source.kind.lower()}/{result.source.name}",
            value=escape(result.source.revision or "—"),
        )
    embed.add_field(name="Requested by", value=f"<@{user_id}>")
    embed.add_field(name="Took", value=seconds(result.elapsed))
    embed.set_footer(text=f"action {cid} · {result.requests} Kubernetes requests")
    return fit_embed(embed)


# --- pods and logs -------------------------------------------------------------------------------


def _age(age: timedelta | None) -> str:
    if age is None:
        return "—"
    s = int(age.total_seconds())
    if s < 3600:
        return f"{s // 60}m"
    if s < 86_400:
        return f"{s // 3600}h"
    return f"{s // 86_400}d"


def pods_pages(pods: Sequence[PodInfo], component: str | None) -> list[discord.Embed]:
    title = f"Pods of {component}" if component else "Pods of Conductor-E"
    if not pods:
        return [discord.Embed(title=title, description="No pod matches.", colour=GREY)]
    lines = []
    for p in pods:
        mark = "🟢" if p.ready else ("🔴" if p.problem else "🟠")
        problem = f" · ⚠️ {escape(p.problem)}" if p.problem else ""
        lines.append(
            f"{mark} **{escape(p.name)}** · {p.phase} · {p.ready_containers}/{p.containers} ready"
            f" · {p.restarts} restarts · {_age(p.age)}{problem}"
        )
    troubled = sum(1 for p in pods if not p.ready)
    pages = chunk_lines(lines, per_page=15)
    return [
        fit_embed(
            discord.Embed(
                title=title, description=text, colour=RED if troubled else GREEN
            ).set_footer(
                text=f"Page {i + 1} of {len(pages)} · {len(pods)} pods, {troubled} not ready"
            )
        )
        for i, text in enumerate(pages)
    ]


def logs_text(chunks: Sequence[LogChunk]) -> str:
    """The (already redacted) logs of every pod, one section per pod."""
    sections = []
    for chunk in chunks:
        head = f"==> {chunk.pod}" + (f"/{chunk.container}" if chunk.container else "") + " <=="
        if chunk.error:
            body = f"(could not read: {chunk.error})"
        else:
            body = "\n".join(chunk.lines) if chunk.lines else "(no lines)"
        sections.append(f"{head}\n{body}")
    return "\n\n".join(sections)


def logs_summary(component: str, chunks: Sequence[LogChunk], lines: int, since: str | None) -> str:
    total = sum(len(c.lines) for c in chunks)
    window = f", last {since}" if since else ""
    return (
        f"Logs of **{escape(component)}**: {len(chunks)} pod(s), {total} line(s) "
        f"(up to {lines} per pod{window}); secrets are redacted."
    )


# --- the audit trail -----------------------------------------------------------------------------


def audit_line(event: RecordedEvent) -> str:
    data = event.data
    mark = OUTCOME_MARK.get(event.type, "•")
    outcome = event.type.removeprefix("ADMIN_ACTION_").lower()
    stamp = discord.utils.format_dt(event.recorded_at, "f")
    target = f" `{code(str(data['target']))}`" if data.get("target") else ""
    result = f" — {escape(cut(str(data['result']), 200))}" if data.get("result") else ""
    cid = f" · `{data['correlationId']}`" if data.get("correlationId") else ""
    return (
        f"{mark} {stamp} **{outcome}** {mention(str(data.get('actor', '?')))} "
        f"`{code(str(data.get('action', '?')))}`{target}{result}{cid}"
    )


def audit_pages(events: Sequence[RecordedEvent]) -> list[discord.Embed]:
    if not events:
        return [
            discord.Embed(
                title="Admin actions", description="No admin action recorded yet.", colour=GREY
            )
        ]
    pages = chunk_lines([audit_line(e) for e in events], per_page=15)
    return [
        fit_embed(
            discord.Embed(title="Admin actions", description=text, colour=BLUE).set_footer(
                text=f"Page {i + 1} of {len(pages)} · newest first"
            )
        )
        for i, text in enumerate(pages)
    ]


def audit_post(entry: AuditEntry) -> str:
    """The audit channel's line for one finished action."""
    mark = OUTCOME_MARK.get(entry.event_type, "•")
    outcome = entry.event_type.removeprefix("ADMIN_ACTION_").lower()
    target = f" `{code(entry.target)}`" if entry.target else ""
    result = f" — {escape(cut(entry.result, 1_500))}" if entry.result else ""
    cid = f" · action `{entry.correlation_id}`" if entry.correlation_id else ""
    return cut(
        f"{mark} **{outcome}**: {mention(entry.actor)} `{code(entry.action)}`{target}{result}{cid}",
        CONTENT,
    )
