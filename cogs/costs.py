"""/cost summary, /cost issue and /keys verify: what the agents spend, and whose key pays.

`/cost` shows read-only figures from the one ledger (bot/services/costs/ledger.py), so it is a
query group open to everyone, like /queue; `/keys verify` asks the Anthropic Admin API about
the organisation's keys, so it is an admin command (group "keys").
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import InvalidInput, quoted
from bot.permissions import QUERIES, access
from bot.services.costs.charts import daily_spend_png
from bot.services.costs.figures import (
    UNATTRIBUTED,
    AgentModelSpend,
    CostSummary,
    IssueCost,
    Spend,
)
from bot.services.costs.keys import KeyReport, verify_keys
from bot.services.costs.ledger import MAX_DAYS
from bot.services.work.queries import parse_issue_ref
from bot.ui import replies
from bot.ui.limits import CHOICE_NAME, CHOICES, FIELD_VALUE, PAGE_TEXT, cut, fit_embed
from cogs._options import ISSUE, SHARE, issue_autocomplete
from store.catalogue import AGENT_PATTERN, parse_issue_stream

if TYPE_CHECKING:
    from bot.client import ConductorBot

KEYS = "keys"  # the admin group of /keys
CHART_NAME = "daily-spend.png"
DEFAULT_DAYS = 30
ROWS_PER_FIELD = 12  # beyond this a field says "… and N more": the chart has the whole picture
MISMATCH = "⚠️"
LINE_CHARS = 300

GREEN = discord.Colour.green()
RED = discord.Colour.red()
GREY = discord.Colour.light_grey()
BLUE = discord.Colour.blurple()
ORANGE = discord.Colour.orange()

_AGENT = re.compile(AGENT_PATTERN)


# --- formatting (Discord-free figures → text) ------------------------------------------------


def usd(value: Decimal | None) -> str:
    """Dollars: cents above a dollar, four places below it (a Haiku call costs fractions of a
    cent), and "cost unknown" for None."""
    if value is None:
        return "cost unknown"
    if abs(value) >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${value:,.4f}"


def _tokens(count: int) -> str:
    return f"{count:,} token{'s' if count != 1 else ''}"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'s' if count != 1 else ''}"


def _reported_note(spend: Spend, *, always: bool = False) -> str:
    """How far the agents' own reported cost is from ours: ` ⚠️ reported $X (+12.3%)` when
    they disagree by more than 5%, ` · reported $X (+0.4%)` otherwise when `always`."""
    pct = spend.difference_pct
    if pct is None or not (always or spend.mismatch):
        return ""
    lead = f" {MISMATCH}" if spend.mismatch else " ·"
    return f"{lead} reported {usd(spend.reported_usd)} ({pct:+.1f}%)"


# What a figure rests on (Spend.basis): ours, or the agents' reported cost where there is no price.
BASIS_NOTE = {
    "priced": "",
    "reported": " (reported: no price)",
    "partly priced": " (some usage has no price: see Unpriced models)",
}


def _spend_text(spend: Spend, *, bold: bool = False, compare: bool = False) -> str:
    """The figure to show for some spend, with its caveats (no price, reported differs)."""
    cost = spend.cost_usd
    if cost is None:
        return "cost unknown (no price, none reported)"
    text = f"**{usd(cost)}**" if bold else usd(cost)
    return text + BASIS_NOTE.get(spend.basis, "") + _reported_note(spend, always=compare)


def _field_text(lines: list[str], limit: int = FIELD_VALUE, max_rows: int = ROWS_PER_FIELD) -> str:
    """Lines joined to fit one embed field, ending "… and N more" when they do not all fit."""
    shown: list[str] = []
    size = 0
    for i, raw in enumerate(lines):
        line = cut(raw, LINE_CHARS)
        more = f"… and {len(lines) - i} more"
        # Room is always kept for the "more" line, so it can be added when the next one fails.
        if i >= max_rows or size + len(line) + 1 + len(more) > limit:
            shown.append(more)
            break
        shown.append(line)
        size += len(line) + 1
    return "\n".join(shown) or "—"


def model_name(model: str) -> str:
    return f"`{model}`" if model else "no model named"


def _pair_line(row: AgentModelSpend) -> str:
    unpriced = " (unpriced model)" if row.unpriced else ""
    spend = _spend_text(row.spend, compare=True)
    return f"`{row.agent_id}` · {model_name(row.model)}{unpriced} · {spend}"


def issue_name(stream_id: str) -> str:
    return "unattributed (no issue named)" if stream_id == UNATTRIBUTED else f"`{stream_id}`"


def _price_footer(sources: list[str]) -> str:
    where = " + ".join(sources) if sources else "no price"
    return f"Priced at each day's price by {where}; reported where a model has none"


def _days(count: int) -> str:
    return _plural(count, "day")


def summary_embed(summary: CostSummary) -> discord.Embed:
    """The /cost summary answer (the chart goes in as its image)."""
    who = f" — `{summary.agent_id}`" if summary.agent_id else ""
    embed = discord.Embed(title=f"Spend, last {_days(summary.days)}{who}", colour=BLUE)
    embed.set_image(url=f"attachment://{CHART_NAME}")
    window = f"{summary.since.isoformat()} to {summary.until.isoformat()} (UTC)"
    total = summary.total
    if total.events == 0:
        whose = f" by `{summary.agent_id}`" if summary.agent_id else ""
        embed.description = (
            f"No token usage recorded{whose} in the last {_days(summary.days)} ({window}).\n"
            "Agents report it as TOKEN_USAGE events."
        )
        embed.colour = GREY
        return fit_embed(embed)

    ratio = summary.today_vs_average
    versus = f" ({ratio:.1f}× the average)" if ratio is not None else ""
    lines = [
        f"{_spend_text(total, bold=True)} in {window}",
        f"{_plural(total.events, 'model call')} · {_tokens(total.tokens.total)}",
        f"Today **{usd(summary.today_usd)}** · daily average "
        f"**{usd(summary.daily_average_usd)}**{versus}",
    ]
    embed.description = "\n".join(lines)

    agents = []
    for row in summary.by_agent:
        budget = f" of {usd(row.budget_usd)} budget" if row.budget_usd is not None else ""
        agents.append(
            f"`{row.agent_id}` {_spend_text(row.spend)} · today {usd(row.today_usd)}{budget}"
        )
    embed.add_field(name="By agent", value=_field_text(agents), inline=False)
    embed.add_field(
        name="By agent and model",
        value=_field_text([_pair_line(row) for row in summary.by_agent_model]),
        inline=False,
    )
    if summary.top_issues:
        issues = []
        for issue in summary.top_issues:
            mark = f" {MISMATCH} reported {usd(issue.reported_usd)}" if issue.mismatch else ""
            issues.append(
                f"{issue_name(issue.stream_id)} {usd(issue.cost_usd)} · "
                f"{_tokens(issue.tokens)}{mark}"
            )
        embed.add_field(name="Top issues by cost", value=_field_text(issues), inline=False)
    if summary.unknown_models:
        models = ", ".join(model_name(m) for m in summary.unknown_models)
        embed.add_field(
            name="Unpriced models",
            value=cut(
                f"No price for {models}: their tokens count, and the agents' reported cost is "
                "used where they sent one (add prices with CONDUCTOR_PRICES_FILE).",
                FIELD_VALUE,
            ),
            inline=False,
        )
    flagged = any(r.spend.mismatch for r in summary.by_agent_model) or any(
        i.mismatch for i in summary.top_issues
    )
    footer = _price_footer(summary.price_sources)
    if flagged:
        footer = f"{MISMATCH} reported and computed cost differ by more than 5% · " + footer
    embed.set_footer(text=footer)
    return fit_embed(embed)


def issue_embed(cost: IssueCost) -> discord.Embed:
    """The /cost issue answer."""
    title = "unattributed usage" if cost.unattributed else cost.stream_id
    embed = discord.Embed(title=f"Cost of {title}", colour=BLUE)
    total = cost.total
    if total.events == 0:
        embed.description = f"No token usage recorded for {issue_name(cost.stream_id)}."
        embed.colour = GREY
        return fit_embed(embed)
    embed.description = (
        f"{_spend_text(total, bold=True)} · {_plural(total.events, 'model call')} · "
        f"{_tokens(total.tokens.total)}"
    )
    embed.add_field(
        name="By agent",
        value=_field_text(
            [
                f"`{agent}` {_spend_text(spend)} · {_tokens(spend.tokens.total)}"
                for agent, spend in cost.by_agent
            ]
        ),
        inline=False,
    )
    embed.add_field(
        name="By agent and model",
        value=_field_text([_pair_line(row) for row in cost.by_agent_model]),
        inline=False,
    )
    if cost.unknown_models:
        models = ", ".join(model_name(m) for m in cost.unknown_models)
        embed.add_field(
            name="Unpriced models", value=cut(f"No price for {models}.", FIELD_VALUE), inline=False
        )
    footer = _price_footer(cost.price_sources)
    if total.mismatch or any(r.spend.mismatch for r in cost.by_agent_model):
        footer = f"{MISMATCH} reported and computed cost differ by more than 5% · " + footer
    embed.set_footer(text=footer)
    return fit_embed(embed)


NOT_CHECKED = (
    "Without the Admin API nothing says whether each mapped key exists and is active, whether "
    "each agent's usage appears under its own key, or whether the tokens agree with the ledger."
)


def keys_embed(report: KeyReport) -> discord.Embed:
    """The /keys verify answer: the headline, every check, and plainly what was not checked."""
    failed = any(c.status == "fail" for c in report.checks)
    colour = GREEN if report.ok else RED if failed else ORANGE
    embed = discord.Embed(title=report.headline, colour=colour)
    embed.description = _field_text(
        report.lines or ["No check ran."], limit=PAGE_TEXT, max_rows=len(report.lines) or 1
    )
    if not report.verified:
        unknown = [c.text for c in report.checks if c.status == "unknown"]
        embed.add_field(
            name="Could not verify",
            value=cut("\n".join(unknown) + "\n" + NOT_CHECKED, FIELD_VALUE),
            inline=False,
        )
    embed.set_footer(text=f"Ledger and Admin API usage over the last {_days(report.days)}")
    return fit_embed(embed)


# --- options ---------------------------------------------------------------------------------


def check_agent(agent: str | None) -> str | None:
    if agent is None or not agent.strip():
        return None
    agent = agent.strip()
    if not _AGENT.fullmatch(agent):
        raise InvalidInput(f"{agent[:64]!r} is not an agent id (letters, digits, . _ : -)")
    return agent


def split_issue(reference: str) -> tuple[str, int] | tuple[None, None]:
    """`owner/repo#12` or an issue URL → ("owner/repo", 12); `unattributed` → (None, None),
    the usage that named no issue."""
    if reference.strip().lower() == "unattributed":
        return None, None
    parsed = parse_issue_stream(parse_issue_ref(reference))
    if parsed is None:  # parse_issue_ref only returns issue streams; kept for the type
        raise InvalidInput(f"{quoted(reference)} is not an issue")
    return parsed


def _choices(values: Iterable[str]) -> list[app_commands.Choice[str]]:
    return [
        app_commands.Choice(name=cut(v, CHOICE_NAME), value=v[:100]) for v in list(values)[:CHOICES]
    ]


def _bot(interaction: discord.Interaction[Any]) -> ConductorBot:
    return interaction.client  # type: ignore[no-any-return]


async def agent_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    """Agents seen (heartbeats) or configured (budgets, keys) matching what was typed."""
    bot = _bot(interaction)
    settings = bot.context.settings
    known = {a.agent_id for a in await bot.queries.agents()}
    known |= set(settings.agent_budgets_usd) | set(settings.agent_keys)
    needle = current.strip().lower()
    return _choices(sorted(a for a in known if needle in a.lower()))


# --- the cogs --------------------------------------------------------------------------------


class CostCog(commands.GroupCog, group_name="cost", group_description="What the agents spend"):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot
        super().__init__()

    @access(QUERIES)
    @app_commands.command(
        name="summary", description="Spend per agent and model, today vs average, top issues"
    )
    @app_commands.describe(
        days=f"The window: the last N days, today included (1-{MAX_DAYS}, default 30)",
        agent="Only this agent",
        share=SHARE,
    )
    @app_commands.autocomplete(agent=agent_autocomplete)
    async def summary(
        self,
        interaction: discord.Interaction[Any],
        days: app_commands.Range[int, 1, MAX_DAYS] = DEFAULT_DAYS,
        agent: str | None = None,
        share: bool = False,
    ) -> None:
        agent_id = check_agent(agent)
        costs = self.bot.services.costs
        costs.window(days)  # a bad window is refused before "thinking…" shows
        # Two queries and a chart drawn in a worker thread: usually well under a second, but
        # a cold start or a busy database must not miss Discord's three-second deadline.
        await replies.defer(interaction, share=share)
        summary = await costs.summary(days, agent_id)
        png = await asyncio.to_thread(daily_spend_png, summary.daily)
        await interaction.edit_original_response(
            embed=summary_embed(summary),
            attachments=[discord.File(io.BytesIO(png), filename=CHART_NAME)],
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @access(QUERIES)
    @app_commands.command(name="issue", description="What one issue cost, by agent and model")
    @app_commands.describe(issue=f"{ISSUE}, or unattributed", share=SHARE)
    @app_commands.autocomplete(issue=issue_autocomplete)
    async def issue(
        self, interaction: discord.Interaction[Any], issue: str, share: bool = False
    ) -> None:
        repo, number = split_issue(issue)
        cost = await self.bot.services.costs.issue(repo, number)
        await replies.send(interaction, share=share, embed=issue_embed(cost))


class KeysCog(commands.GroupCog, group_name="keys", group_description="The agents' API keys"):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot
        super().__init__()

    @access(KEYS)
    @app_commands.command(
        name="verify", description="Check each agent uses its own active Anthropic API key"
    )
    async def verify(self, interaction: discord.Interaction[Any]) -> None:
        # The Admin API is paged and may be slow: acknowledge first. Key names and ids are for
        # the admins who asked, so the answer is never shared.
        await replies.defer(interaction, share=False)
        report = await verify_keys(self.bot.services.costs)
        await replies.send(interaction, embed=keys_embed(report))


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(CostCog(bot))
    await bot.add_cog(KeysCog(bot))
