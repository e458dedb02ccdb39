"""Confirming a destructive command, and showing its progress in one message.

`ConfirmView` is the one confirmation every destructive command uses (restart, reconcile,
requeue...), so that each asks the same way: only the invoker may press, and the buttons are
disabled once pressed or timed out. `ProgressMessage` then edits that same message as the
action advances, so the person follows it in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable
from typing import Any

import discord

from bot.ui.limits import BUTTON_LABEL, cut, fit_embed
from bot.ui.owned import OwnerOnlyView

log = logging.getLogger(__name__)

CONFIRM_ID = "confirm:yes"
CANCEL_ID = "confirm:no"
DEFAULT_TIMEOUT = 60.0
DEFAULT_EDIT_INTERVAL = 1.0


class Choice(enum.Enum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


# What the message becomes once decided: an embed (or None to keep the question's).
Decided = Callable[[Choice], discord.Embed | None]


class ConfirmView(OwnerOnlyView):
    """Confirm / Cancel for the invoker only; times out after `timeout` seconds."""

    refusal = "Only {owner}, who ran the command, can confirm or cancel it."

    def __init__(
        self,
        owner_id: int,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        confirm_label: str = "Confirm",
        cancel_label: str = "Cancel",
        decided: Decided | None = None,
    ) -> None:
        super().__init__(owner_id, timeout=timeout)
        self.decided = decided
        self.choice: Choice | None = None
        self.interaction: discord.Interaction[Any] | None = None  # the command's
        self.confirm.label = cut(confirm_label, BUTTON_LABEL)
        self.cancel.label = cut(cancel_label, BUTTON_LABEL)

    async def ask(
        self,
        interaction: discord.Interaction[Any],
        *,
        embed: discord.Embed,
        ephemeral: bool = False,
    ) -> Choice:
        """Post the question as the reply to `interaction` (in place of "thinking…" when the
        command deferred to look something up first) and wait for the answer."""
        self.interaction = interaction
        if interaction.response.is_done():
            await interaction.edit_original_response(
                embed=fit_embed(embed), view=self, allowed_mentions=discord.AllowedMentions.none()
            )
        else:
            await interaction.response.send_message(
                embed=fit_embed(embed),
                view=self,
                ephemeral=ephemeral,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        await self.wait()
        if self.choice is None:
            # Timed out. discord.py runs on_timeout as a separate task, so the message is
            # updated here, where the caller can rely on it having happened.
            self.choice = Choice.TIMED_OUT
            self._disable()
            kwargs = self._decided_message(Choice.TIMED_OUT)
            try:
                await interaction.edit_original_response(view=self, **kwargs)
            except discord.HTTPException as exc:
                log.warning("confirm: could not disable the buttons after a timeout: %s", exc)
        return self.choice

    def _disable(self) -> None:
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True

    def _decided_message(self, choice: Choice) -> dict[str, Any]:
        embed = self.decided(choice) if self.decided is not None else None
        return {"embed": fit_embed(embed)} if embed is not None else {}

    async def _decide(self, interaction: discord.Interaction[Any], choice: Choice) -> None:
        if self.choice is not None:  # a second press racing the first: nothing more to do
            await interaction.response.defer()
            return
        self.choice = choice
        self._disable()
        try:
            await interaction.response.edit_message(view=self, **self._decided_message(choice))
        finally:
            # Only now does ask() return: the caller's first progress edit must not race
            # (and be overwritten by) this update of the same message.
            self.stop()

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.danger, custom_id=CONFIRM_ID)
    async def confirm(
        self, interaction: discord.Interaction[Any], _: discord.ui.Button[Any]
    ) -> None:
        await self._decide(interaction, Choice.CONFIRMED)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary, custom_id=CANCEL_ID)
    async def cancel(
        self, interaction: discord.Interaction[Any], _: discord.ui.Button[Any]
    ) -> None:
        await self._decide(interaction, Choice.CANCELLED)


class ProgressMessage:
    """Edits an interaction's original response with the latest state, rate-limited.

    Edits are spaced at least `interval` seconds apart, the latest state winning (Discord
    rate-limits message edits, and nobody reads faster); the outcome is shown at once."""

    def __init__(
        self,
        interaction: discord.Interaction[Any],
        *,
        interval: float = DEFAULT_EDIT_INTERVAL,
    ) -> None:
        self.interaction = interaction
        self.interval = interval
        self.edits = 0
        self._latest: discord.Embed | None = None
        self._last_edit = float("-inf")
        self._pending: asyncio.Task[None] | None = None
        self._finished = False
        # Edits go one at a time, so an edit in flight never lands after the outcome.
        self._lock = asyncio.Lock()

    async def update(self, embed: discord.Embed) -> None:
        """Show `embed` now, or at the next allowed moment (a newer update replaces it)."""
        if self._finished:
            return
        self._latest = embed
        if self._pending is not None:
            return  # the scheduled edit will show the latest state
        wait = self._last_edit + self.interval - asyncio.get_running_loop().time()
        if wait <= 0:
            await self._flush()
        else:
            self._pending = asyncio.create_task(self._flush_later(wait), name="progress-edit")

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._pending = None
        await self._flush()

    async def _flush(self) -> None:
        embed, self._latest = self._latest, None
        if embed is not None:
            await self._edit(embed)

    async def _edit(self, embed: discord.Embed, *, final: bool = False) -> None:
        async with self._lock:
            if self._finished and not final:
                return
            self._last_edit = asyncio.get_running_loop().time()
            self.edits += 1
            try:
                await self.interaction.edit_original_response(
                    embed=fit_embed(embed), allowed_mentions=discord.AllowedMentions.none()
                )
            except discord.HTTPException as exc:
                # The next update tries again; a rollout is not abandoned for a display.
                log.warning("progress: could not edit the message: %s", exc)

    async def stop(self) -> None:
        """Drop any scheduled edit; later updates are ignored (the message is someone else's
        to change now, e.g. the error reply's)."""
        self._finished = True
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pending
            self._pending = None

    async def finish(self, embed: discord.Embed) -> None:
        """Show the outcome at once; later updates are ignored."""
        await self.stop()
        await self._edit(embed, final=True)
