"""The Conductor-E Discord bot: ConductorBot and `run_bot`, which the composition root calls.

Cogs are discovered, not listed: every module of the `cogs` package whose name does not start
with `_` (python-discord's mark of a private helper), so a new cog is a new file there;
`extensions=` overrides the list (tests, or a deployment that wants fewer). `run_bot` keeps a
bot running through Discord outages: only a rejected token stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import pkgutil
from collections.abc import Sequence
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot import discord_http
from bot.permissions import AccessPolicy
from bot.services.alerts import Alert, AlertService
from bot.services.coordination.loop import CoordinationService
from bot.services.health.components import DISCORD, rejected, retry_delay
from bot.tree import ConductorTree
from bot.wiring import Services
from store.errors import DatabaseUnavailableError

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
        services: Services,
        *,
        extensions: Sequence[str] | None = None,
        policy: AccessPolicy | None = None,
        presence_interval: float = PRESENCE_INTERVAL,
        alert_retry_delay: float = 1.0,
        issue_threads: bool | None = None,
        coordination: CoordinationService | None = None,
        **options: Any,
    ) -> None:
        # Conductor-E has no voice: discord.py's warnings that PyNaCl and davey are missing are
        # noise in every bot's start-up log.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
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
        context = services.context
        settings = context.settings
        self.services = services
        self.context = context
        self.extension_names = list(extensions) if extensions is not None else discover_extensions()
        self.policy = policy or AccessPolicy.from_settings(settings)
        self.queries = services.queries
        self.presence_interval = presence_interval
        self.alerts = AlertService(
            context,
            self.post_alert,
            threads=settings.issue_threads if issue_threads is None else issue_threads,
            retry_delay=alert_retry_delay,
        )
        self.shown_depth: int | None = None
        # The composition root's service, whose loop runs beside the bot (None: the cog builds
        # its own and runs the loop itself).
        self.coordination = coordination
        self.was_ready = False
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

    async def on_ready(self) -> None:
        self.was_ready = True
        self.context.components.up(DISCORD)

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


# Gateway close codes that say our side is wrong (not an outage): authentication failed, and
# the shard, API version and intents errors. Retrying them cannot help.
REJECTED_TOKEN_CLOSE = 4004
FATAL_CLOSE_CODES = frozenset({REJECTED_TOKEN_CLOSE, 4010, 4011, 4012, 4013, 4014})


def _rejected_token(exc: BaseException) -> bool:
    if isinstance(exc, discord.ConnectionClosed):
        return exc.code == REJECTED_TOKEN_CLOSE
    return isinstance(exc, discord.LoginFailure)


def _outage(exc: BaseException) -> bool:
    """Discord cannot be reached, or fails on its side, or the database was down while a fresh
    bot started (its command sync reads the store): worth retrying."""
    if isinstance(exc, DatabaseUnavailableError):
        return True
    if isinstance(exc, commands.ExtensionFailed) and isinstance(
        exc.original, DatabaseUnavailableError
    ):
        return True
    if isinstance(exc, discord.ConnectionClosed):
        return exc.code not in FATAL_CLOSE_CODES
    if isinstance(exc, discord.HTTPException):
        return isinstance(exc, discord.DiscordServerError) or exc.status == 429
    return isinstance(exc, OSError | aiohttp.ClientError | TimeoutError | discord.GatewayNotFound)


async def run_bot(
    services: Services, *, coordination: CoordinationService | None = None, **options: Any
) -> bool:
    """Run the bot until cancelled; closes cleanly either way.

    While Discord cannot be reached (refused, timed out, 5xx, the gateway lost), a fresh bot
    logs in again after a capped, jittered backoff (CONDUCTOR_RETRY_MAX_SECONDS); the log says
    "discord: down" once and "discord: up again" once. Returns False, after one line naming
    DISCORD_BOT_TOKEN, when Discord rejects the token. Anything else (a broken cog) raises.
    """
    context = services.context
    token = context.settings.discord_bot_token
    if token is None:
        raise RuntimeError("DISCORD_BOT_TOKEN is not set")
    components = context.components
    failures = 0
    while True:
        bot = ConductorBot(services, coordination=coordination, **options)
        try:
            async with bot:
                # No reconnect of discord.py's own: its backoff grows to 17 minutes and logs a
                # traceback per attempt. A resumable drop is still resumed inside start().
                await bot.start(token.get_secret_value(), reconnect=False)
            components.down(DISCORD, "the gateway closed the connection")
        except Exception as exc:
            if _rejected_token(exc):
                how = "gateway close 4004" if isinstance(exc, discord.ConnectionClosed) else "401"
                components.stopped(DISCORD, rejected("DISCORD_BOT_TOKEN", "Discord", how))
                return False
            if not _outage(exc):
                raise
            components.down(DISCORD, exc)
        if bot.was_ready:
            failures = 0
        await asyncio.sleep(retry_delay(failures, context.settings.retry_max_seconds))
        failures += 1
