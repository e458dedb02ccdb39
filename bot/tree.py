"""The command tree: the one place that authorises commands and answers errors.

Every command is checked against the access policy (bot/permissions.py) at run time, and every
error becomes one short ephemeral reply with a reference id that is also in the log, so no cog
replies with errors itself and no stack trace reaches Discord. Commands are synced to the guild
only when their definitions changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from typing import Any, Protocol, cast

import discord
from discord import app_commands

from bot.context import AppContext
from bot.errors import reference_id, to_user_facing
from bot.permissions import AccessPolicy, Caller, access_group, record_denial
from bot.ui.render import error_text
from bot.ui.replies import PUBLIC_DEFER

log = logging.getLogger(__name__)

SYNC_HASH_KEY = "discord.commands.hash"


class AccessDenied(app_commands.CheckFailure):
    """The caller may not run this command; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def qualified_name(interaction: discord.Interaction[Any]) -> str:
    command = interaction.command
    return command.qualified_name if command is not None else "unknown command"


class TreeOwner(Protocol):
    """What the tree needs of its bot (bot.client.ConductorBot), without importing it."""

    context: AppContext
    policy: AccessPolicy

    async def is_owner(self, user: discord.abc.User, /) -> bool: ...


class ConductorTree(app_commands.CommandTree[Any]):
    """CommandTree with run-time access checks, one error reply and hash-based syncing."""

    @property
    def bot(self) -> TreeOwner:
        return cast(TreeOwner, self.client)

    async def caller(self, interaction: discord.Interaction[Any]) -> Caller:
        user = interaction.user
        roles = frozenset(role.id for role in getattr(user, "roles", []))
        guild_id = self.bot.context.settings.guild_id
        in_guild = interaction.guild_id is not None and (
            guild_id is None or interaction.guild_id == guild_id
        )
        return Caller(user.id, roles, in_guild, await self.bot.is_owner(user))

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        """Apply the access policy to every command; a denial is recorded as
        ADMIN_ACTION_DENIED and raised as AccessDenied, for `report_error` to answer."""
        command = interaction.command
        if isinstance(command, app_commands.ContextMenu):
            group = command.extras.get("conductor_access")
            group = str(group) if group is not None else None
        else:
            group = access_group(command)
        caller = await self.caller(interaction)
        decision = self.bot.policy.decide(group, caller)
        if decision.allowed:
            return True
        if interaction.type is discord.InteractionType.autocomplete:
            return False  # no suggestions; the denial is recorded when the command is run
        name = qualified_name(interaction)
        log.info("denied /%s to user %s: %s", name, caller.user_id, decision.reason)
        try:
            await record_denial(self.bot.context, caller, f"/{name}", decision.reason)
        except Exception:  # the denial stands even when it cannot be recorded
            log.exception("could not record the denial of /%s", name)
        raise AccessDenied(f"You may not run /{name}: {decision.reason}.")

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        await self.report_error(interaction, error)

    async def report_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        """Reply to the user (ephemeral, short, with a reference id) and log the error under the
        same id, with its stack trace when it was unexpected. Views call it too."""
        ref = reference_id()
        original: BaseException = error
        if isinstance(error, app_commands.CommandInvokeError | app_commands.TransformerError):
            original = error.__cause__ or getattr(error, "original", None) or error
        name = qualified_name(interaction)
        known = to_user_facing(original)
        if isinstance(error, AccessDenied):
            message = error.message
            log.info("ref=%s /%s: %s", ref, name, message)
        elif known is not None:
            message = known.message
            log.info("ref=%s /%s: %s: %s", ref, name, type(original).__name__, message)
        elif isinstance(error, app_commands.TransformerError):
            message = f"That value of option {error.value!r} is not valid here."[:300]
            log.info("ref=%s /%s: bad option value", ref, name)
        elif isinstance(error, app_commands.CheckFailure):
            message = "You may not run this command."
            log.info("ref=%s /%s: check failed: %s", ref, name, error)
        else:
            message = "Something went wrong on our side; the team can find it by this reference."
            log.error("ref=%s /%s failed", ref, name, exc_info=original)
        await self._reply_error(interaction, error_text(message, ref))

    async def _reply_error(self, interaction: discord.Interaction[Any], text: str) -> None:
        try:
            if not interaction.response.is_done():
                await interaction.response.send_message(
                    text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
                )
                return
            if interaction.extras.get(PUBLIC_DEFER):
                # A public "thinking…" must not turn into a public error: remove it.
                with contextlib.suppress(discord.HTTPException):
                    await interaction.delete_original_response()
                await interaction.followup.send(
                    text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
                )
                return
            await interaction.edit_original_response(
                content=text, embed=None, view=None, allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException:
            log.warning("could not deliver an error reply for interaction %s", interaction.id)

    # --- syncing --------------------------------------------------------------------------
    def definitions(self, guild: discord.abc.Snowflake | None) -> list[dict[str, Any]]:
        """The command payloads as they would be synced, in a stable order."""
        commands = self.get_commands(guild=guild)
        return sorted((c.to_dict(self) for c in commands), key=lambda d: str(d["name"]))

    def definitions_hash(self, guild: discord.abc.Snowflake | None) -> str:
        blob = json.dumps(self.definitions(guild), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    async def sync_if_changed(self, *, force: bool = False) -> bool:
        """Sync the commands to the configured guild when they changed since the last sync (a
        hash kept in AppState), or when forced (`/conductor sync`).

        Returns whether a sync happened.
        """
        guild_id = self.bot.context.settings.guild_id
        if guild_id is None:
            log.warning("discord: CONDUCTOR_GUILD_ID is not set; slash commands are not synced")
            return False
        guild = discord.Object(guild_id)
        self.copy_global_to(guild=guild)
        digest = self.definitions_hash(guild)
        key = f"{SYNC_HASH_KEY}.{guild_id}"
        state = self.bot.context.state
        if not force and await state.get(key) == digest:
            log.info("discord: slash commands unchanged; not synced")
            return False
        synced = await self.sync(guild=guild)
        await state.set(key, digest)
        log.info("discord: synced %d slash commands to guild %s", len(synced), guild_id)
        return True
