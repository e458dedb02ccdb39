"""How query results look in Discord: one function per answer, each returning embeds.

Everything here is cut to Discord's limits (bot/ui/limits.py); long answers come back as a
list of pages for the paginator.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import discord

from bot.services.health.checks import HealthReport
from bot.services.work.queries import QueueExplanation, QueuePage, Timeline
from bot.services.work.routing import route_label
from bot.ui.limits import FIELD_VALUE, chunk_lines, cut, fit_embed
from store.events import RecordedEvent
from store.projections import Agent, ExecutionLog, Issue

BLUE = discord.Colour.blurple()
GREEN = discord.Colour.green()
RED = discord.Colour.red()
GREY = discord.Colour.light_grey()

PRIORITY_MARK = {"critical": "🔴", "high": "🟠", "normal": "⚪"}
TITLE_CHARS = 90


def age(since: datetime | None, now: datetime) -> str:
    """A short age: 45s, 12m, 3h, 2d 4h."""
    if since is None:
        return "—"
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86_400:
        return f"{seconds // 3600}h"
    days, rest = divmod(seconds, 86_400)
    return f"{days}d {rest // 3600}h" if rest >= 3600 else f"{days}d"


def _escape(text: str) -> str:
    return discord.utils.escape_markdown(discord.utils.escape_mentions(text))


def issue_link(issue: Issue) -> str:
    title = _escape(cut(issue.title or "(no title)", TITLE_CHARS)).replace("]", "\\]")
    ref = f"{issue.repo}#{issue.number}"
    if issue.url and issue.url.startswith(("https://", "http://")):
        return f"`{ref}` [{title}]({issue.url})"
    return f"`{ref}` {title}"


def queue_line(rank: int, issue: Issue, now: datetime) -> str:
    mark = PRIORITY_MARK.get(issue.priority, "⚪")
    attempt = f" · attempt {issue.attempt + 1}" if issue.attempt else ""
    return (
        f"**{rank}.** {mark} {issue.priority} · {issue_link(issue)} · "
        f"{age(issue.approved_at or issue.state_since, now)}{attempt}{held_note(issue)}"
    )


def held_text(issue: Issue) -> str:
    """`held by <who>: <why>` of a held issue (who as a mention for a Discord user)."""
    who = issue.held_by or "someone"
    shown = f"<@{who[8:]}>" if who.startswith("discord:") else _escape(who)
    why = f": {_escape(cut(issue.held_reason, 200))}" if issue.held_reason else ""
    return f"held by {shown}{why}"


def held_note(issue: Issue) -> str:
    return f" · ⏸️ **{held_text(issue)}**" if issue.held else ""


def queue_embed(page: QueuePage, now: datetime) -> discord.Embed:
    where = f" — {page.repo}" if page.repo else ""
    embed = discord.Embed(title=f"Priority queue{where}", colour=BLUE)
    if not page.issues:
        embed.description = (
            "The queue is empty: no approved issue waits for an agent."
            if page.offset == 0
            else "No more issues on this page."
        )
    else:
        lines = [queue_line(page.offset + i + 1, issue, now) for i, issue in enumerate(page.issues)]
        embed.description = "\n".join(lines)
    if page.pages is not None:
        footer = f"Page {page.page} of {page.pages} · {page.total} queued"
    else:
        footer = f"Page {page.page}"
    embed.set_footer(text=footer)
    return fit_embed(embed)


def why_embed(explanation: QueueExplanation, now: datetime) -> discord.Embed:
    issue = explanation.issue
    embed = discord.Embed(
        title=f"Why {issue.repo}#{issue.number}?",
        description="\n".join(explanation.reasons),
        colour=BLUE if issue.state == "queued" else GREY,
    )
    embed.add_field(name="Issue", value=issue_link(issue), inline=False)
    embed.add_field(name="State", value=issue.state.replace("_", " "))
    embed.add_field(name="Priority", value=issue.priority)
    embed.add_field(
        name="Place",
        value=f"{explanation.rank} of {explanation.queued}" if explanation.rank else "—",
    )
    embed.add_field(name="In this state for", value=age(issue.state_since, now))
    embed.add_field(name="Attempts", value=str(issue.attempt))
    if explanation.route is not None:
        embed.add_field(name="Route", value=cut(route_label(explanation.route), FIELD_VALUE))
    if explanation.top is not None and explanation.top.stream_id != issue.stream_id:
        embed.add_field(name="Top of the queue", value=issue_link(explanation.top), inline=False)
    return fit_embed(embed)


def _event_detail(event: RecordedEvent) -> str:
    data = event.data
    parts = []
    for key in ("agentId", "prNumber", "priority", "status", "reason", "details", "environment"):
        value = data.get(key)
        if value not in (None, ""):
            label = "PR #" if key == "prNumber" else ""
            parts.append(f"{label}{value}" if label else f"{key}={value}")
    return cut(", ".join(str(p) for p in parts), 200)


RUN_MARK = {"completed": "✅", "failed": "❌", "running": "⏳"}


def run_line(run: ExecutionLog, now: datetime) -> str:
    """One execution log: agent, model, steps, turns, duration, tokens, cost, PR."""
    parts = [f"{RUN_MARK.get(run.status, '•')} **{_escape(run.status)}**"]
    parts.append(_escape(run.agent_id or "unknown agent"))
    parts.append(_escape(run.model or "unknown model"))
    parts.append(f"{len(run.steps)} steps")
    if run.total_turns is not None:
        parts.append(f"{run.total_turns} turns")
    if run.completed_at is not None:
        parts.append(f"took {age(run.started_at, run.completed_at)}")
    else:
        parts.append(f"running for {age(run.started_at, now)}")
    tokens = sum(
        n or 0
        for n in (
            run.input_tokens,
            run.output_tokens,
            run.cache_read_tokens,
            run.cache_creation_tokens,
        )
    )
    if tokens:
        parts.append(f"{tokens:,} tokens")
    if run.total_cost_usd is not None:
        parts.append(f"${run.total_cost_usd:,.2f} reported")
    if run.pr_number:
        parts.append(f"PR #{run.pr_number}")
    return cut(" · ".join(parts), 300)


def timeline_pages(timeline: Timeline, now: datetime) -> list[discord.Embed]:
    lines = []
    for event in timeline.events:
        stamp = discord.utils.format_dt(event.recorded_at, "f")
        detail = _event_detail(event)
        lines.append(f"{stamp} **{event.type}**" + (f" — {_escape(detail)}" if detail else ""))
    if not lines:
        lines = ["No events recorded."]
    pages = chunk_lines(lines, per_page=20)
    issue = timeline.issue
    embeds = []
    for i, text in enumerate(pages):
        embed = discord.Embed(title=f"{timeline.stream_id}", description=text, colour=BLUE)
        if issue is not None:
            if issue.title:
                embed.title = cut(f"{timeline.stream_id} — {issue.title}", 256)
            if issue.url and issue.url.startswith(("https://", "http://")):
                embed.url = issue.url
            embed.add_field(name="State", value=issue.state.replace("_", " "))
            embed.add_field(name="Priority", value=issue.priority)
            embed.add_field(name="Assignee", value=issue.assignee or "—")
            if issue.held:
                embed.add_field(name="Held", value=cut(held_text(issue), FIELD_VALUE), inline=False)
        if timeline.gate:
            embed.add_field(name="Merge gate", value=cut(timeline.gate, FIELD_VALUE), inline=False)
        if timeline.runs:
            runs = "\n".join(run_line(run, now) for run in timeline.runs)
            embed.add_field(name="Runs (newest first)", value=cut(runs, FIELD_VALUE), inline=False)
        embed.set_footer(text=f"Page {i + 1} of {len(pages)} · {len(timeline.events)} events")
        embeds.append(fit_embed(embed))
    return embeds


def events_pages(events: list[RecordedEvent], event_type: str | None) -> list[discord.Embed]:
    title = f"Recent {event_type.upper()} events" if event_type else "Recent events"
    if not events:
        what = f"no {event_type.upper()} event" if event_type else "no event"
        return [discord.Embed(title=title, description=f"The store has {what} yet.", colour=GREY)]
    lines = []
    for event in events:
        stamp = discord.utils.format_dt(event.recorded_at, "R")
        detail = _event_detail(event)
        lines.append(
            f"`{event.position}` {stamp} **{event.type}** `{_escape(event.stream_id)}`"
            + (f" — {_escape(detail)}" if detail else "")
        )
    pages = chunk_lines(lines, per_page=15)
    return [
        fit_embed(
            discord.Embed(title=title, description=text, colour=BLUE).set_footer(
                text=f"Page {i + 1} of {len(pages)} · newest first"
            )
        )
        for i, text in enumerate(pages)
    ]


def agents_pages(agents: list[Agent], now: datetime, stale_after: timedelta) -> list[discord.Embed]:
    if not agents:
        return [
            discord.Embed(
                title="Agents",
                description="No agent has reported yet (no HEARTBEAT recorded).",
                colour=GREY,
            )
        ]
    lines = []
    for agent in agents:
        mark = "⚠️ **stale**" if agent.stale else "🟢"
        if agent.paused:
            why = f": {_escape(cut(agent.paused_reason, 200))}" if agent.paused_reason else ""
            mark = f"⏸️ **paused**{why} ·"
        current = f" · on `{_escape(agent.current_issue)}`" if agent.current_issue else ""
        beat = age(agent.last_heartbeat, now)
        lines.append(
            f"{mark} **{_escape(agent.agent_id)}** · {_escape(agent.status)}{current} · "
            f"last heartbeat {beat} ago"
        )
    stale = sum(1 for a in agents if a.stale)
    pages = chunk_lines(lines, per_page=20)
    minutes = int(stale_after.total_seconds() // 60) or 1
    return [
        fit_embed(
            discord.Embed(
                title="Agents", description=text, colour=RED if stale else GREEN
            ).set_footer(
                text=f"{len(agents)} agents · {stale} stale (no heartbeat for {minutes}m) · "
                f"page {i + 1} of {len(pages)}"
            )
        )
        for i, text in enumerate(pages)
    ]


def health_embed(report: HealthReport) -> discord.Embed:
    ok = report.ok
    embed = discord.Embed(
        title="Health: " + ("all critical components up" if ok else "a critical component is down"),
        colour=GREEN if ok else RED,
    )
    for c in report.components:
        mark = "🟢" if c.ok else ("🔴" if c.critical else "🟠")
        latency = f"{c.latency_ms:.0f} ms" if c.latency_ms is not None else "—"
        kind = "critical" if c.critical else "optional"
        embed.add_field(
            name=f"{mark} {c.name}",
            value=cut(f"{_escape(c.detail)}\n{latency} · {kind}", FIELD_VALUE),
        )
    if not report.components:
        embed.description = "No component reported."
    return fit_embed(embed)


def help_embed(entries: Iterable[tuple[str, str]]) -> discord.Embed:
    lines = [f"`/{name}` — {_escape(description)}" for name, description in entries]
    embed = discord.Embed(title="Commands you can run", colour=BLUE)
    embed.description = "\n".join(lines) if lines else "There is no command you may run here."
    return fit_embed(embed)


def error_text(message: str, ref: str) -> str:
    return cut(f"❌ {message} (ref `{ref}`)", 2_000)
