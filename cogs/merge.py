"""/merge status|now|pause|resume: see and steer the merge gate (bot/services/merge_gate)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.permissions import QUERIES, access
from bot.services.merge_gate.gate import MergeGate
from bot.services.merge_gate.policy import Decision, check_pr
from bot.ui import replies
from bot.ui.confirm import Choice, ConfirmView
from bot.ui.limits import fit_embed
from cogs._options import SHARE, repo_autocomplete

if TYPE_CHECKING:
    from bot.client import ConductorBot

REPO = "The repository (owner/repo)"
PR = "The pull request number"
MERGE = "merge"  # the admin access group


def decision_embed(decision: Decision, title: str | None = None) -> discord.Embed:
    colour = discord.Colour.green() if decision.green else discord.Colour.orange()
    embed = discord.Embed(
        title=title or f"Merge gate · {decision.repo}#{decision.number}",
        description=decision.render(),
        colour=colour,
    )
    if decision.head_sha:
        embed.set_footer(
            text=f"head {decision.head_sha[:12]} · {decision.requests} GitHub requests"
        )
    return embed


class MergeCog(commands.GroupCog, group_name="merge", group_description="The merge gate"):
    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot
        super().__init__()

    def gate(self) -> MergeGate:
        return self.bot.services.merge_gate

    @access(QUERIES)
    @app_commands.command(name="status", description="Each merge condition of a PR, with why")
    @app_commands.describe(repo=REPO, pr=PR, share=SHARE)
    @app_commands.autocomplete(repo=repo_autocomplete)
    async def status(
        self, interaction: discord.Interaction[Any], repo: str, pr: int, share: bool = False
    ) -> None:
        check_pr(repo, pr)
        await interaction.response.defer(ephemeral=not share, thinking=True)
        decision = await self.gate().decide(repo, pr, trigger="status-command", merge=False)
        await replies.send(interaction, share=share, embed=decision_embed(decision))

    @access(MERGE)
    @app_commands.command(name="now", description="Merge a green PR now, after confirmation")
    @app_commands.describe(repo=REPO, pr=PR)
    @app_commands.autocomplete(repo=repo_autocomplete)
    async def now(self, interaction: discord.Interaction[Any], repo: str, pr: int) -> None:
        check_pr(repo, pr)
        # Judging reads GitHub (several requests): answer Discord within its 3 s first.
        await interaction.response.defer(ephemeral=True, thinking=True)
        gate = self.gate()
        seen = await gate.decide(repo, pr, trigger="admin", force=True, merge=False)
        if seen.action != "ready":
            # Red, a draft, a conflict, closed: refused before anyone is asked to confirm.
            await replies.send(interaction, embed=decision_embed(seen, "Not merged"))
            return
        view = ConfirmView(
            interaction.user.id,
            timeout=self.bot.context.settings.confirm_timeout_seconds,
            confirm_label=f"Merge {seen.head_sha[:7]}",
        )
        choice = await view.ask(
            interaction, embed=decision_embed(seen, f"Merge {repo}#{pr} now?"), ephemeral=True
        )
        if choice is not Choice.CONFIRMED:
            return
        done = await gate.decide(repo, pr, trigger="admin", force=True, expected_sha=seen.head_sha)
        await interaction.edit_original_response(
            embed=fit_embed(decision_embed(done, f"{repo}#{pr}: {done.action}")), view=None
        )

    @access(MERGE)
    @app_commands.command(name="pause", description="Stop the gate merging (one repo or all)")
    @app_commands.describe(repo="Only this repository (default: every repo)")
    @app_commands.autocomplete(repo=repo_autocomplete)
    async def pause(self, interaction: discord.Interaction[Any], repo: str | None = None) -> None:
        await self._switch(interaction, repo, pause=True)

    @access(MERGE)
    @app_commands.command(name="resume", description="Let the gate merge again")
    @app_commands.describe(repo="Only this repository (default: every repo)")
    @app_commands.autocomplete(repo=repo_autocomplete)
    async def resume(self, interaction: discord.Interaction[Any], repo: str | None = None) -> None:
        await self._switch(interaction, repo, pause=False)

    async def _switch(
        self, interaction: discord.Interaction[Any], repo: str | None, *, pause: bool
    ) -> None:
        if repo is not None:
            check_pr(repo, 1)
        await self.gate().switch(repo, str(interaction.user.id), pause=pause)
        scope = repo or "every repo"
        verb = "paused" if pause else "resumed"
        await replies.send(
            interaction, share=True, content=f"The merge gate is {verb} for {scope}."
        )


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(MergeCog(bot))
