"""Kubernetes admin from Discord: /rollout restart|status, /flux status|reconcile, /pods, /logs,
and /audit recent.

Admins only, and only the allowlisted targets of the configuration (CONDUCTOR_ROLLOUT_TARGETS,
CONDUCTOR_FLUX_OBJECTS, the chart's components), checked before any Kubernetes client exists,
so a refused request never reaches the cluster. Restarts and reconciles are confirmed first
and followed in one message, and every action leaves an audit trail (bot/services/audit.py).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import Conflict, InvalidInput, UserFacingError
from bot.integrations.kubernetes import FLUX_KINDS, KubernetesClient
from bot.permissions import access
from bot.services.audit import AdminAction, AuditEntry, AuditService
from bot.services.cluster.flux import FluxProgress, ReconcileTimedOut
from bot.services.cluster.polling import PollPolicy
from bot.services.cluster.rollouts import (
    MAX_LOG_LINES,
    RolloutConfig,
    RolloutProgress,
    RolloutService,
    RolloutTimedOut,
)
from bot.tree import AccessDenied
from bot.ui import replies
from bot.ui.confirm import DEFAULT_EDIT_INTERVAL, Choice, ConfirmView, ProgressMessage
from bot.ui.limits import CHOICE_NAME, CHOICES, cut
from cogs import _admin_render as render
from cogs._options import SHARE

if TYPE_CHECKING:
    from bot.client import ConductorBot

log = logging.getLogger(__name__)

T = TypeVar("T")

# Access groups: every one is an admin group (CONDUCTOR_ADMIN_USER_IDS / ROLE_IDS by default).
ROLLOUT = "rollout"
FLUX = "flux"
CLUSTER = "cluster"
AUDIT = "audit"

UNEXPECTED = "unexpected error (see the bot's log)"
AUDIT_DEFAULT = 20
AUDIT_MAX = 100
DEFAULT_LOG_LINES = 100

Progress = Callable[[RolloutService, ProgressMessage], Awaitable[None]]


# --- autocomplete: the configuration, never Kubernetes -----------------------------------------


def _config(interaction: discord.Interaction[Any]) -> RolloutConfig:
    cog = interaction.client.get_cog("AdminCog")
    if isinstance(cog, AdminCog):
        return cog.config
    return RolloutConfig.from_settings(interaction.client.context.settings)


def _choices(values: list[str], current: str) -> list[app_commands.Choice[str]]:
    wanted = current.strip().lower()
    found = [v for v in values if wanted in v.lower()]
    return [app_commands.Choice(name=cut(v, CHOICE_NAME), value=v[:100]) for v in found[:CHOICES]]


async def target_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    return _choices(list(_config(interaction).rollout_targets), current)


async def flux_kind_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    configured = {entry.partition("/")[0] for entry in _config(interaction).flux_objects}
    return _choices([k for k in FLUX_KINDS if k in configured], current)


async def flux_name_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    kind = getattr(interaction.namespace, "kind", None)
    try:
        key = render.flux_key(kind) if kind else None
    except InvalidInput:
        return []
    names = []
    for entry in _config(interaction).flux_objects:
        entry_kind, _, name = entry.partition("/")
        if key is None or entry_kind == key:
            names.append(name)
    return _choices(sorted(set(names)), current)


async def component_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    return _choices(render.components(_config(interaction)), current)


# --- the cog -----------------------------------------------------------------------------------


class AdminCog(commands.Cog):
    """Rollouts, Flux, pods, logs and the audit trail, for admins."""

    rollout = app_commands.Group(name="rollout", description="Restart a deployment or show it")
    flux = app_commands.Group(name="flux", description="Flux objects: status and reconcile")
    audit_commands = app_commands.Group(name="audit", description="The trail of admin actions")

    def __init__(self, bot: ConductorBot) -> None:
        self.bot = bot
        settings = bot.context.settings
        self.config = RolloutConfig.from_settings(settings)
        # Tunables: tests and the benchmark change these on the loaded cog.
        self.confirm_timeout = settings.confirm_timeout_seconds
        self.rollout_timeout = settings.rollout_timeout_seconds
        self.edit_interval = DEFAULT_EDIT_INTERVAL
        self.poll = PollPolicy()
        poster = self._post_audit if settings.audit_channel_id is not None else None
        self.audit = AuditService(bot.context.store, poster=poster)
        self._service: RolloutService | None = None
        self._connecting = asyncio.Lock()
        self._busy: dict[str, int] = {}  # object → who is changing it now

    async def cog_unload(self) -> None:
        await self.audit.drain()
        if self._service is not None:
            await self._service.close()
            self._service = None

    # --- the service, built on first use ------------------------------------------------------
    async def service(self) -> RolloutService:
        """The process's RolloutService; raises ClusterUnavailable when no cluster is set up.

        Built on first use, so a bot without a cluster still loads (its admin commands say
        Kubernetes is not configured), and closed in `cog_unload`."""
        async with self._connecting:
            if self._service is None:
                settings = self.bot.context.settings
                kube = await KubernetesClient.create(
                    settings.namespace, settings.kubeconfig, settings.kube_context
                )
                self._service = RolloutService.from_settings(kube, settings)
                log.info("kubernetes: connected to %s (namespace %s)", kube.host, kube.namespace)
            self._service.poll = self.poll
            return self._service

    # --- the audit trail around each action ---------------------------------------------------
    async def _begin(
        self,
        interaction: discord.Interaction[Any],
        action: str,
        target: str | None,
        check: Callable[[], object] | None = None,
    ) -> AdminAction:
        """Record the request, then refuse it (recorded as denied) when `check` raises: the
        allowlist, checked before any Kubernetes client exists."""
        act = self.audit.begin(render.actor_of(interaction.user.id), action, target)
        await act.requested()
        if check is not None:
            try:
                check()
            except UserFacingError as exc:
                await act.denied(exc.message)
                raise
        return act

    async def _connect(self, act: AdminAction) -> RolloutService:
        try:
            return await self.service()
        except UserFacingError as exc:
            await act.failed(exc.message)
            raise

    async def _read(self, act: AdminAction, call: Callable[[RolloutService], Awaitable[T]]) -> T:
        service = await self._connect(act)
        try:
            return await call(service)
        except UserFacingError as exc:
            await act.failed(exc.message)
            raise
        except Exception:
            await act.failed(UNEXPECTED)
            raise

    async def _confirmed_action(
        self,
        interaction: discord.Interaction[Any],
        act: AdminAction,
        *,
        key: str,
        title: str,
        what: str,
        label: str,
        run: Progress,
    ) -> None:
        """One at a time per object: confirm, record, then `run` with a progress message."""
        holder = self._busy.get(key)
        if holder is not None:
            reason = f"{key} is already being changed by <@{holder}>; wait for that to finish"
            await act.denied(reason)
            raise Conflict(reason)
        service = await self._connect(act)
        user_id = interaction.user.id
        self._busy[key] = user_id
        try:
            timeout = self.confirm_timeout
            question = render.confirm_embed(title, what, user_id, timeout, act.correlation_id)
            view = ConfirmView(
                user_id,
                timeout=timeout,
                confirm_label=label,
                decided=lambda choice: render.decided_embed(question, choice, timeout),
            )
            choice = await view.ask(interaction, embed=question)
            if choice is Choice.CANCELLED:
                await act.cancelled("cancelled by the invoker")
                return
            if choice is Choice.TIMED_OUT:
                await act.cancelled(f"timed out: not confirmed within {timeout:g}s")
                return
            await act.confirmed()
            await run(service, ProgressMessage(interaction, interval=self.edit_interval))
        finally:
            self._busy.pop(key, None)

    async def _follow(
        self,
        act: AdminAction,
        progress: ProgressMessage,
        call: Callable[[], Awaitable[T]],
        *,
        what: str,
        steps: render.Steps,
    ) -> T | None:
        """Run a followed action; on a known failure show and record it, and return None."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        user_id = int(act.actor.partition(":")[2] or 0)
        try:
            return await call()
        except (RolloutTimedOut, ReconcileTimedOut) as exc:
            failure: UserFacingError = exc
            title = f"{what} timed out"
        except UserFacingError as exc:
            failure = exc
            title = f"{what} failed"
        except Exception:
            await progress.stop()  # the tree's error reply takes the message over
            await act.failed(UNEXPECTED)
            raise
        await act.failed(failure.message)
        await progress.finish(
            render.failed_embed(
                title, failure.message, steps, loop.time() - started, user_id, act.correlation_id
            )
        )
        return None

    # --- /rollout ----------------------------------------------------------------------------
    @access(ROLLOUT)
    @rollout.command(name="restart", description="Restart a deployment and follow its rollout")
    @app_commands.describe(target="The deployment (one of CONDUCTOR_ROLLOUT_TARGETS)")
    @app_commands.autocomplete(target=target_autocomplete)
    async def rollout_restart(self, interaction: discord.Interaction[Any], target: str) -> None:
        act = await self._begin(
            interaction,
            "/rollout restart",
            target,
            lambda: render.check_target(self.config, target),
        )
        user_id, cid = interaction.user.id, act.correlation_id

        async def run(service: RolloutService, progress: ProgressMessage) -> None:
            steps = render.Steps()

            async def on_progress(event: RolloutProgress) -> None:
                steps.add(event.elapsed, event.message)
                await progress.update(
                    render.rollout_progress_embed(target, event, steps, user_id, cid)
                )

            result = await self._follow(
                act,
                progress,
                lambda: service.restart(target, on_progress, timeout=self.rollout_timeout),
                what=f"Restart of {target}",
                steps=steps,
            )
            if result is None:
                return
            await act.completed(
                f"successfully rolled out in {result.elapsed:.1f}s "
                f"({result.requests} Kubernetes requests)"
            )
            await progress.finish(render.rollout_done_embed(result, steps, user_id, cid))

        await self._confirmed_action(
            interaction,
            act,
            key=f"deployment/{target}",
            title=f"Restart deployment {target}?",
            what=(
                f"Every pod of deployment **{render.escape(target)}** in namespace "
                f"`{self.config.namespace}` is replaced, as `kubectl rollout restart` does; "
                f"the rollout is then followed for up to {render.seconds(self.rollout_timeout)}."
            ),
            label="Restart",
            run=run,
        )

    @access(ROLLOUT)
    @rollout.command(name="status", description="A deployment's replicas and rollout state")
    @app_commands.describe(target="The deployment (one of CONDUCTOR_ROLLOUT_TARGETS)", share=SHARE)
    @app_commands.autocomplete(target=target_autocomplete)
    async def rollout_status(
        self, interaction: discord.Interaction[Any], target: str, share: bool = False
    ) -> None:
        act = await self._begin(
            interaction, "/rollout status", target, lambda: render.check_target(self.config, target)
        )
        await replies.defer(interaction, share=share)
        deployment = await self._read(act, lambda service: service.status(target))
        await act.completed(deployment.describe())
        await replies.send(interaction, share=share, embed=render.deployment_embed(deployment))

    # --- /flux -------------------------------------------------------------------------------
    @access(FLUX)
    @flux.command(name="status", description="Ready, revision and message of the Flux objects")
    @app_commands.describe(kind="Only this kind (kustomization, helmrelease, gitrepository)")
    @app_commands.describe(share=SHARE)
    @app_commands.autocomplete(kind=flux_kind_autocomplete)
    async def flux_status(
        self, interaction: discord.Interaction[Any], kind: str | None = None, share: bool = False
    ) -> None:
        act = await self._begin(
            interaction,
            "/flux status",
            kind or "all",
            (lambda: render.flux_key(kind)) if kind else None,
        )
        key = render.flux_key(kind) if kind else None
        await replies.defer(interaction, share=share)
        objects = await self._read(act, lambda service: service.flux_status(key))
        not_ready = sum(1 for o in objects if o.ready is not True)
        await act.completed(f"{len(objects)} objects, {not_ready} not ready")
        await replies.send_pages(interaction, render.flux_status_pages(objects, key), share=share)

    @access(FLUX)
    @flux.command(name="reconcile", description="Ask Flux to reconcile an object now; follow it")
    @app_commands.describe(
        kind="kustomization, helmrelease or gitrepository",
        name="The object (from CONDUCTOR_FLUX_OBJECTS)",
        with_source="Reconcile its GitRepository first (it must be allowed too)",
    )
    @app_commands.rename(with_source="with-source")
    @app_commands.autocomplete(kind=flux_kind_autocomplete, name=flux_name_autocomplete)
    async def flux_reconcile(
        self,
        interaction: discord.Interaction[Any],
        kind: str,
        name: str,
        with_source: bool = False,
    ) -> None:
        act = await self._begin(
            interaction,
            "/flux reconcile" + (" --with-source" if with_source else ""),
            f"{kind}/{name}",
            lambda: render.check_flux(self.config, kind, name),
        )
        key = render.check_flux(self.config, kind, name)
        user_id, cid = interaction.user.id, act.correlation_id

        async def run(service: RolloutService, progress: ProgressMessage) -> None:
            steps = render.Steps()

            async def on_progress(event: FluxProgress) -> None:
                steps.add(event.elapsed, f"{event.kind.lower()}/{event.name}: {event.message}")
                await progress.update(
                    render.flux_progress_embed(key, name, event, steps, user_id, cid)
                )

            result = await self._follow(
                act,
                progress,
                lambda: service.flux_reconcile(
                    key, name, with_source, on_progress, timeout=self.rollout_timeout
                ),
                what=f"Reconciliation of {key}/{name}",
                steps=steps,
            )
            if result is None:
                return
            await act.completed(
                f"ready at {result.revision or 'an unknown revision'} in {result.elapsed:.1f}s "
                f"({result.requests} Kubernetes requests)"
            )
            await progress.finish(render.flux_done_embed(result, steps, user_id, cid))

        source = " after its GitRepository source" if with_source else ""
        await self._confirmed_action(
            interaction,
            act,
            key=f"{key}/{name}",
            title=f"Reconcile {key}/{name}?",
            what=(
                f"Flux reconciles **{key}/{render.escape(name)}**{source} now, as "
                "`flux reconcile` does, and it is followed until Ready for up to "
                f"{render.seconds(self.rollout_timeout)}."
            ),
            label="Reconcile",
            run=run,
        )

    # --- /pods and /logs ---------------------------------------------------------------------
    @access(CLUSTER)
    @app_commands.command(name="pods", description="Conductor-E's pods: phase, readiness, restarts")
    @app_commands.describe(component="Only this component (api, bot, coordinate...)", share=SHARE)
    @app_commands.autocomplete(component=component_autocomplete)
    async def pods(
        self,
        interaction: discord.Interaction[Any],
        component: str | None = None,
        share: bool = False,
    ) -> None:
        act = await self._begin(
            interaction,
            "/pods",
            component or "all",
            (lambda: render.check_component(self.config, component)) if component else None,
        )
        await replies.defer(interaction, share=share)
        found = await self._read(act, lambda service: service.pods(component))
        troubled = sum(1 for p in found if not p.ready)
        await act.completed(f"{len(found)} pods, {troubled} not ready")
        await replies.send_pages(interaction, render.pods_pages(found, component), share=share)

    @access(CLUSTER)
    @app_commands.command(name="logs", description="The latest log lines of a component's pods")
    @app_commands.describe(
        component="The component (api, bot, coordinate...)",
        lines=f"Lines per pod (1-{MAX_LOG_LINES}, default {DEFAULT_LOG_LINES})",
        since="Only lines newer than this: 30s, 15m, 2h, 1h30m",
        share=SHARE,
    )
    @app_commands.autocomplete(component=component_autocomplete)
    async def logs(
        self,
        interaction: discord.Interaction[Any],
        component: str,
        lines: app_commands.Range[int, 1, MAX_LOG_LINES] = DEFAULT_LOG_LINES,
        since: str | None = None,
        share: bool = False,
    ) -> None:
        def check() -> None:
            render.check_component(self.config, component)
            if not 1 <= lines <= MAX_LOG_LINES:  # Discord enforces it; a raw request may not
                raise InvalidInput(f"lines must be between 1 and {MAX_LOG_LINES}")
            if since is not None:
                render.parse_since(since)

        act = await self._begin(interaction, "/logs", component, check)
        window = render.parse_since(since) if since is not None else None
        await replies.defer(interaction, share=share)
        chunks = await self._read(act, lambda service: service.logs(component, lines, window))
        total = sum(len(c.lines) for c in chunks)
        await act.completed(f"{total} lines from {len(chunks)} pods")
        summary = render.logs_summary(component, chunks, lines, since)
        text = render.logs_text(chunks)
        if len(text) <= render.INLINE_LOG_CHARS and "```" not in text:
            await interaction.edit_original_response(
                content=f"{summary}\n```\n{text}\n```",
                allowed_mentions=discord.AllowedMentions.none(),
            )
            return
        # Long output goes as a file: a message would cut it, an embed would mangle it.
        await interaction.edit_original_response(
            content=summary,
            attachments=[discord.File(io.BytesIO(text.encode()), filename=f"logs-{component}.txt")],
            allowed_mentions=discord.AllowedMentions.none(),
        )

    # --- /audit ------------------------------------------------------------------------------
    @access(AUDIT)
    @audit_commands.command(name="recent", description="The latest admin actions, newest first")
    @app_commands.describe(
        limit=f"How many records (1-{AUDIT_MAX}, default {AUDIT_DEFAULT})", share=SHARE
    )
    async def audit_recent(
        self,
        interaction: discord.Interaction[Any],
        limit: app_commands.Range[int, 1, AUDIT_MAX] = AUDIT_DEFAULT,
        share: bool = False,
    ) -> None:
        if not 1 <= limit <= AUDIT_MAX:
            raise InvalidInput(f"limit must be between 1 and {AUDIT_MAX}, got {limit}")
        events = await self.audit.recent(limit)
        await replies.send_pages(interaction, render.audit_pages(events), share=share)

    # --- the audit channel -------------------------------------------------------------------
    async def _post_audit(self, entry: AuditEntry) -> None:
        settings = self.bot.context.settings
        assert settings.audit_channel_id is not None
        channel = self.bot.get_partial_messageable(
            settings.audit_channel_id, guild_id=settings.guild_id
        )
        await channel.send(
            render.audit_post(entry), allowed_mentions=discord.AllowedMentions.none()
        )

    async def cog_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        # The tree records a permission denial and replies; the audit channel hears of it here.
        if isinstance(error, AccessDenied):
            command = interaction.command
            name = command.qualified_name if command is not None else "unknown command"
            self.audit.announce(
                AuditEntry(
                    "ADMIN_ACTION_DENIED",
                    render.actor_of(interaction.user.id),
                    f"/{name}",
                    None,
                    error.message,
                    None,
                )
            )


async def setup(bot: ConductorBot) -> None:
    await bot.add_cog(AdminCog(bot))
