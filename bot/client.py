"""The Conductor-E Discord bot: ConductorBot and `run_bot`, which the composition root calls.

`setup_hook` (which runs during login) points the gateway where the API says, loads every cog
as an extension — one that fails stops start-up with its error — syncs the slash commands to
the guild when their definitions changed, and starts the background work: live alerts and the
presence that shows the queue depth.

Extensions are discovered: every module in the `cogs` package whose name does not start with
`_` (python-discord's convention for private helper modules). A new cog is a new file there;
`extensions=` overrides the list (tests, or a deployment that wants fewer).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import pkgutil
from collections.abc import Sequence
from typing import Any

import discord
from discord.ext import commands

from bot import discord_http
from bot.context import AppContext
from bot.permissions import AccessPolicy
from bot.services.alerts import Alert, AlertService
from bot.services.queries import QueryService
from bot.tree import ConductorTree

log = logging.getLogger(__name__)

COGS_PACKAGE = "cogs"
THREAD_ALREADY_EXISTS = 160004
PRESENCE_INTERVAL = 60.0


def discover_extensions(package: str = COGS_PACKAGE) -> list[str]:
    """Every public module of the cogs package, by name, sorted."""
    module = importlib.import_module(package)
    return sorted(
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules(module.__path__)
        if not info.name.startswith("_")
    )


class ConductorBot(commands.Bot):
    """commands.Bot with Conductor-E's context, tree, policy and background work."""

    def __init__(
        self,
        context: AppContext,
        *,
        extensions: Sequence[str] | None = None,
        policy: AccessPolicy | None = None,
        presence_interval: float = PRESENCE_INTERVAL,
        alert_retry_delay: float = 1.0,
        issue_threads: bool | None = None,
        **options: Any,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # roles and channels for the access checks; nothing more
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=ConductorTree,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            **options,
        )
        settings = context.settings
        self.context = context
        self.extension_names = list(extensions) if extensions is not None else discover_extensions()
        self.policy = policy or AccessPolicy.from_ids(
            settings.admin_user_ids, settings.admin_role_ids
        )
        self.queries = QueryService(context)
        self.presence_interval = presence_interval
        self.alerts = AlertService(
            context,
            self.post_alert,
            threads=settings.issue_threads if issue_threads is None else issue_threads,
            retry_delay=alert_retry_delay,
        )
        self.shown_depth: int | None = None
        self._background: list[asyncio.Task[None]] = []

    @property
    def conductor_tree(self) -> ConductorTree:
        tree = self.tree
        assert isinstance(tree, ConductorTree)
        return tree

    # --- start-up ---------------------------------------------------------------------------
    async def login(self, token: str) -> None:
        discord_http.use_api(self.context.settings.discord_api_url)
        await super().login(token)

    async def setup_hook(self) -> None:
        await discord_http.use_gateway(self.http, self.context.settings.discord_api_url)
        for name in self.extension_names:
            await self.load_extension(name)  # ExtensionFailed stops start-up with its cause
            log.info("discord: loaded extension %s", name)
        await self.conductor_tree.sync_if_changed()
        if self.alerts.enabled:
            self._start(self._run_alerts(), "discord-alerts")
        else:
            log.info("discord: alerts off (no CONDUCTOR_TASKS_CHANNEL_ID/ADMIN_CHANNEL_ID)")
        self._start(self._run_presence(), "discord-presence")

    def _start(self, coro: Any, name: str) -> None:
        self._background.append(asyncio.create_task(coro, name=name))

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        await super().close()

    # --- alerts -----------------------------------------------------------------------------
    async def _run_alerts(self) -> None:
        while True:
            try:
                await self.alerts.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alerts: the follower stopped; restarting in 5s")
                await asyncio.sleep(5)

    async def post_alert(self, alert: Alert) -> None:
        """Post an alert; the nonce makes a repeated post return the first message."""
        channel = self.get_partial_messageable(
            alert.channel_id, guild_id=self.context.settings.guild_id
        )
        message = await channel.send(
            alert.text, nonce=alert.nonce, allowed_mentions=discord.AllowedMentions.none()
        )
        if alert.thread_name:
            try:
                await self.http.start_thread_with_message(
                    alert.channel_id,
                    message.id,
                    name=alert.thread_name,
                    auto_archive_duration=1440,
                    rate_limit_per_user=None,
                )
            except discord.HTTPException as exc:
                if exc.code != THREAD_ALREADY_EXISTS:  # a retry after a crash: already there
                    raise

    # --- presence ---------------------------------------------------------------------------
    async def _run_presence(self) -> None:
        await self.wait_until_ready()
        while True:
            try:
                await self.update_presence()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("presence: could not update (%s)", type(exc).__name__)
            await asyncio.sleep(self.presence_interval)

    async def update_presence(self) -> None:
        """Show the queue depth, when it changed since last shown."""
        depth = await self.queries.queue_depth()
        if depth == self.shown_depth:
            return
        noun = "issue" if depth == 1 else "issues"
        await self.change_presence(
            activity=discord.Activity(
                type=discord.ActivityType.watching, name=f"{depth} queued {noun}"
            )
        )
        self.shown_depth = depth


async def run_bot(context: AppContext, **options: Any) -> None:
    """Log in with DISCORD_BOT_TOKEN and run until cancelled; closes cleanly either way."""
    token = context.settings.discord_bot_token
    if token is None:
        raise RuntimeError("DISCORD_BOT_TOKEN is not set")
    bot = ConductorBot(context, **options)
    async with bot:
        await bot.start(token.get_secret_value())
