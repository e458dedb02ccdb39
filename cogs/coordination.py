"""/coordinate run and /coordinate status, and the coordination loop of a bot built alone.

In `conductor-e run` and `bot` the loop runs beside the bot, so that a Discord outage does not
stop it, and this cog only serves the commands over that service. A bot built without one
(tests, tools) runs its own loop here, every CONDUCTOR_LOOP_INTERVAL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.errors import InvalidInput
from bot.integrations.anthropic_messages import MessagesClient
from bot.permissions import QUERIES, access
from bot.services.coordination.loop import CoordinationService
from bot.services.coordination.result import RunResult, format_line
from bot.services.work.queries import MAX_EVENTS
from bot.ui import replies
from bot.ui.limits import FIELD_VALUE, chunk_lines, cut, fit_embed
from cogs._options import SHARE
from store.events import RecordedEvent

if TYPE_CHECKING:
    from bot.client import ConductorBot

log = logging.getLogger(__name__)

COORDINATE = "coordinate"  # the admin group of /coordinate run
RUN_TYPES = ("COORDINATION_RUN_COMPLETED", "COORDINATION_RUN_FAILED")
STATUS_DEFAULT = 10
STATUS_MAX = min(25, MAX_EVENTS)
LISTED = 5  # issue ids shown per list in a run's answer

GREEN = discord.Colour.green()
RED = discord.Colour.red()
GREY = discord.Colour.light_grey()


# --- rendering -------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return discord.utils.escape_markdown(discord.utils.escape_mentions(text))


def _ids(ids: list[str]) -> str:
    shown = ", ".join(f"`{i}`" for i in ids[:LISTED])
    more = f" and {len(ids) - LISTED} more" if len(ids) > LISTED else ""
    return f": {shown}{more}" if ids else ""


def _queue(depth: dict[str, Any]) -> str:
    total = sum(int(v) for v in depth.values())
    by = ", ".join(f"{depth[p]} {p}" for p in ("critical", "high", "normal") if depth.get(p))
    return f"{total} queued" + (f" ({by})" if by else "")


def _github(result: RunResult) -> str:
    if result.github in ("ok", "incomplete"):
        text = (
            f"{result.github_found} agent-ready found, {len(result.approved)} approved"
            f"{_ids(result.approved)}"
        )
        if result.withdrawn:
            text += f"; {len(result.withdrawn)} withdrawn{_ids(result.withdrawn)}"
        if result.reprioritised:
            text += f"; {len(result.reprioritised)} reprioritised"
        if result.github == "incomplete":
            text = "⚠️ incomplete: " + text
        return text
    return {
        "off": "off (GITHUB_TOKEN is not set)",
        "skipped": "skipped (dry run)",
        "failed": "❌ failed (see errors)",
        "stopped": "⛔ stopped: GitHub rejected GITHUB_TOKEN (see errors)",
    }.get(result.github, result.github)


def run_embed(result: RunResult) -> discord.Embed:
    """A run's answer: its one line, then the key figures."""
    if result.skipped:
        return fit_embed(
            discord.Embed(
                title="Coordination run skipped",
                description=(
                    "Another coordination run holds the lock (the loop, or the CronJob in "
                    "another pod). Nothing was done; `/coordinate status` shows it when it ends."
                ),
                colour=GREY,
            )
        )
    head = "Coordination dry run" if result.dry_run else "Coordination run"
    status = "ok" if result.ok else "FAILED"
    embed = discord.Embed(title=f"{head}: {status}", colour=GREEN if result.ok else RED)
    line = format_line(result).replace("```", "'''")
    embed.description = f"```\n{cut(line, 3_900)}\n```"
    if result.health_ok is not None:
        down = sorted(name for name, up in result.health.items() if not up)
        embed.add_field(name="Health", value="all up" if not down else f"down: {', '.join(down)}")
    embed.add_field(name="Queue", value=_queue(result.queue_depth))
    embed.add_field(name="GitHub", value=cut(_github(result), FIELD_VALUE), inline=False)
    stuck = f"{len(result.stuck)} stuck{_ids(result.stuck)}"
    if result.stuck:
        stuck += f"; {len(result.requeued)} requeued, {len(result.escalated)} escalated"
    embed.add_field(name="Stuck work", value=cut(stuck, FIELD_VALUE), inline=False)
    summary = result.summary
    if result.model_calls:
        summary += f" ({result.model_calls} model call, ${result.cost_usd:.4f})"
    elif result.summary_source:
        summary += f" ({result.summary_source})"
    embed.add_field(name="Summary", value=summary)
    recorded = (
        "nothing (dry run)"
        if result.dry_run
        else f"{result.appended} events" + ("" if result.recorded else "; the run itself NOT")
    )
    embed.add_field(name="Recorded", value=recorded)
    if result.budget_alerts:
        embed.add_field(
            name="Budget alerts",
            value=cut("\n".join(result.budget_alerts), FIELD_VALUE),
            inline=False,
        )
    if result.errors:
        embed.add_field(
            name="Errors",
            value=cut("\n".join(_escape(e) for e in result.errors), FIELD_VALUE),
            inline=False,
        )
    if result.notes:
        embed.add_field(
            name="Notes",
            value=cut("\n".join(_escape(n) for n in result.notes), FIELD_VALUE),
            inline=False,
        )
    if result.dry_run and result.summary_text:
        embed.add_field(
            name="The summary it would post",
            value=cut(_escape(result.summary_text), FIELD_VALUE),
            inline=False,
        )
    embed.set_footer(text=f"run {result.run_id[:8]} · {result.duration_ms / 1000:.2f}s")
    return fit_embed(embed)


def run_event_line(event: RecordedEvent) -> str:
    """One recorded run (COORDINATION_RUN_*), as a line of /coordinate status."""
    data = event.data
    ok = event.type == "COORDINATION_RUN_COMPLETED"
    stamp = discord.utils.format_dt(event.recorded_at, "f")
    seconds = f"{int(data.get('durationMs') or 0) / 1000:.1f}s"
    parts = [f"{'✅' if ok else '❌'} {stamp} · {seconds}"]
    parts.append(_queue(dict(data.get("queueDepth") or {})))
    github = data.get("github")
    if github in ("ok", "incomplete"):
        parts.append(
            f"github{' incomplete:' if github == 'incomplete' else ''} "
            f"{data.get('githubFound', 0)} found, {len(data.get('approved') or [])} approved"
        )
    elif github:
        parts.append(f"github {github}")
    stuck = len(data.get("stuck") or [])
    if stuck:
        parts.append(f"{stuck} stuck")
    if data.get("summary"):
        parts.append(f"summary {data['summary']}")
    line = " · ".join(parts)
    if not ok and data.get("error"):
        line += f"\n  ↳ {_escape(cut(str(data['error']), 300))}"
    return line


def status_pages(
    runs: list[RecordedEvent], loop_line: str, last: RunResult | None
) -> list[discord.Embed]:
    """The /coordinate status answer: the loop in this bot, then the last runs, newest first."""
    lines = [run_event_line(e) for e in runs] or [
        "No coordination run recorded yet: the loop has not run, or runs elsewhere and has not "
        "run either. `/coordinate run` runs one now."
    ]
    if last is not None and last.skipped:
        lines.insert(0, "The last run this bot tried was skipped: another run held the lock.")
    failed = bool(runs) and runs[0].type == "COORDINATION_RUN_FAILED"
    pages = chunk_lines(lines, per_page=10)
    return [
        fit_embed(
            discord.Embed(
                title="Coordination runs",
                description=f"{loop_line}\n\n{text}",
                colour=GREY if not runs else RED if failed else GREEN,
            ).set_footer(text=f"Page {i + 1} of {len(pages)} · newest first")
        )
        for i, text in enumerate(pages)
    ]


def _every(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} seconds"


# --- the cog ---------------------------------------------------------------------------------


class CoordinationCog(
    commands.GroupCog, group_name="coordinate", group_description="The coordination loop"
):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot
        self.messages: MessagesClient | None = None
        self.service: CoordinationService | None = None
        self.last_result: RunResult | None = None
        self.loop_iterations = 0
        super().__init__()

    async def cog_load(self) -> None:
        context = self.bot.context
        settings = context.settings
        if self.bot.coordination is not None:
            # `conductor-e run` and `bot`: the composition root owns the service and runs the
            # loop beside the bot, so a Discord outage does not stop it.
            self.service = self.bot.coordination
            return
        if settings.anthropic_api_key is not None:
            self.messages = MessagesClient.from_settings(settings)
        self.service = self.bot.services.coordination(self.messages)
        if settings.loop_enabled:
            self.coordination_loop.change_interval(seconds=settings.loop_interval_seconds)
            self.coordination_loop.start()
            log.info("coordination: loop on, every %s", _every(settings.loop_interval_seconds))
        else:
            log.info("coordination: loop off in the bot (CONDUCTOR_LOOP_ENABLED=false)")

    async def cog_unload(self) -> None:
        self.coordination_loop.cancel()
        task = self.coordination_loop.get_task()
        if task is not None:
            # A run cut short here leaves no lock behind (its connection is released) and no
            # half-written event (each append is a transaction); it just has no run record.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.messages is not None:
            await self.messages.close()
            self.messages = None

    # --- one run, from the loop or a command ------------------------------------------------
    async def run_once(self, dry_run: bool = False) -> RunResult:
        """One coordination run (which also records the budget thresholds crossed)."""
        assert self.service is not None, "the cog is not loaded"
        result = await self.service.run(dry_run)
        self.last_result = result
        return result

    @tasks.loop(seconds=300.0)
    async def coordination_loop(self) -> None:
        try:
            result = await self.run_once()
        except Exception:
            # run() does not raise; should anything else, the loop must outlive it.
            log.exception("coordination: the loop's iteration failed; next one as planned")
        else:
            level = logging.INFO if result.ok else logging.WARNING
            log.log(level, "coordination: %s", format_line(result))
            if result.budget_alerts:
                log.info("coordination: %d budget alert(s) recorded", len(result.budget_alerts))
        finally:
            self.loop_iterations += 1

    @coordination_loop.before_loop
    async def _first_run_after_one_interval(self) -> None:
        # Not at once: a bot that restarts repeatedly (a crash loop, a rollout) must not turn
        # into a burst of runs, and `/coordinate run` is there for "now".
        await asyncio.sleep(self.bot.context.settings.loop_interval_seconds)

    def loop_line(self) -> str:
        settings = self.bot.context.settings
        if not settings.loop_enabled:
            return "The loop is off in this bot (CONDUCTOR_LOOP_ENABLED=false): a CronJob runs it."
        if self.bot.coordination is not None:
            every = _every(settings.loop_interval_seconds)
            return f"The loop runs in this process beside the bot, every {every}."
        line = f"The loop runs in this bot every {_every(settings.loop_interval_seconds)}"
        upcoming = self.coordination_loop.next_iteration
        if upcoming is None or self.loop_iterations == 0:
            return line + " (its first run is one interval after start-up)."
        return line + f"; next run {discord.utils.format_dt(upcoming, 'R')}."

    # --- commands -----------------------------------------------------------------------------
    @access(COORDINATE)
    @app_commands.command(name="run", description="Run the coordination loop once, now")
    @app_commands.describe(
        dry_run="Only read and judge: record nothing, post nothing, show the summary",
        share=SHARE,
    )
    async def run(
        self, interaction: discord.Interaction[Any], dry_run: bool = False, share: bool = False
    ) -> None:
        # A run searches GitHub and may call the model: seconds, not milliseconds.
        await replies.defer(interaction, share=share)
        result = await self.run_once(dry_run)
        log.info(
            "coordination (/coordinate run by %s): %s", interaction.user.id, format_line(result)
        )
        await replies.send(interaction, share=share, embed=run_embed(result))

    @access(QUERIES)
    @app_commands.command(name="status", description="The last coordination runs, newest first")
    @app_commands.describe(
        limit=f"How many runs (1-{STATUS_MAX}, default {STATUS_DEFAULT})", share=SHARE
    )
    async def status(
        self,
        interaction: discord.Interaction[Any],
        limit: app_commands.Range[int, 1, STATUS_MAX] = STATUS_DEFAULT,
        share: bool = False,
    ) -> None:
        if not 1 <= limit <= STATUS_MAX:  # Discord enforces the range; a raw request may not
            raise InvalidInput(f"limit must be between 1 and {STATUS_MAX}, got {limit}")
        queries = self.bot.queries
        runs: list[RecordedEvent] = []
        for event_type in RUN_TYPES:
            runs += await queries.recent_events(event_type, limit)
        runs.sort(key=lambda e: e.position, reverse=True)
        pages = status_pages(runs[:limit], self.loop_line(), self.last_result)
        await replies.send_pages(interaction, pages, share=share)


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(CoordinationCog(bot))
