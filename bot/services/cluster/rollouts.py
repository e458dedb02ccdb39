"""Kubernetes admin use cases: restart a deployment and follow its rollout, reconcile Flux
objects, show their status, list pods, read (redacted) logs.

Everything is checked against the allowlist in the settings (CONDUCTOR_ROLLOUT_TARGETS,
CONDUCTOR_FLUX_OBJECTS, the known components) before a single request reaches the cluster.
Confirmation and audit events are the caller's job (the Discord side); this module acts.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from bot.errors import Conflict, Forbidden, InvalidInput, Unavailable, UpstreamError
from bot.integrations.kubernetes import (
    DeploymentStatus,
    FluxObjectStatus,
    KubernetesClient,
    KubernetesForbidden,
    KubernetesNotFound,
    LogChunk,
    PodInfo,
    rfc3339_nano,
)
from bot.services.cluster.flux import (
    FluxCallback,
    FluxReconcileResult,
    kind_key,
    reconcile,
    refuse_suspended,
    unreadable,
)
from bot.services.cluster.polling import PollPolicy, RequestCount, call_safely, follow
from bot.services.cluster.redaction import Redactor, secret_values
from bot.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_POD_SELECTOR = "app.kubernetes.io/name=conductor-e,app.kubernetes.io/component={component}"
DEFAULT_ALL_PODS_SELECTOR = "app.kubernetes.io/name=conductor-e"
# The components the chart deploys (helm/conductor-e/templates: app.kubernetes.io/component).
DEFAULT_COMPONENTS = ("api", "bot", "coordinate", "postgresql")
DEFAULT_TIMEOUT = 300.0
MAX_LOG_LINES = 5000
MAX_LOG_PODS = 10
DIAGNOSE_TIMEOUT = 5.0

# A label value: what a component may be, so it cannot smuggle extra selector terms in.
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


# --- errors ---------------------------------------------------------------------------------------


class NotAllowed(Forbidden):
    """The target is not in the configured allowlist; nothing was sent to the cluster."""

    code = "not_allowed"


class RolloutFailed(UpstreamError):
    """The rollout stopped: the deployment exceeded its progress deadline."""

    code = "rollout_failed"


class RolloutTimedOut(UpstreamError):
    """The rollout did not complete within the timeout; the message says what it waited for."""

    code = "rollout_timed_out"
    status = 504


class DeploymentPaused(Conflict):
    """kubectl refuses to restart a paused deployment, and so do we."""


# --- what callers get back ------------------------------------------------------------------------

RolloutPhase = Literal["requested", "progressing", "complete", "failed", "timed_out"]


@dataclass(frozen=True)
class RolloutProgress:
    """One step of a followed rollout, as the progress callback sees it."""

    target: str
    phase: RolloutPhase
    message: str
    deployment: DeploymentStatus
    elapsed: float  # seconds since the restart began
    requests: int  # Kubernetes requests sent for this rollout so far


@dataclass(frozen=True)
class RolloutResult:
    target: str
    restarted_at: str | None
    deployment: DeploymentStatus
    elapsed: float
    requests: int  # Kubernetes requests this restart and its following cost


RolloutCallback = Callable[[RolloutProgress], Awaitable[None]]


@dataclass(frozen=True)
class RolloutConfig:
    """What the service may act on, and how pods of a component are found."""

    namespace: str
    rollout_targets: tuple[str, ...] = ()
    flux_objects: tuple[str, ...] = ()  # "kind/name", kind lower-case
    components: tuple[str, ...] = DEFAULT_COMPONENTS
    pod_selector: str = DEFAULT_POD_SELECTOR  # {component} is replaced
    all_pods_selector: str = DEFAULT_ALL_PODS_SELECTOR
    component_selectors: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> RolloutConfig:
        # The pod selectors are optional settings (CONDUCTOR_POD_SELECTOR, a template with
        # {component}, and CONDUCTOR_COMPONENT_SELECTORS, component -> selector); until
        # Settings has them, the chart's labels are the default.
        template = getattr(settings, "pod_selector", None) or DEFAULT_POD_SELECTOR
        overrides = getattr(settings, "component_selectors", None) or {}
        return cls(
            namespace=settings.namespace,
            rollout_targets=tuple(settings.rollout_targets),
            flux_objects=tuple(_flux_key(entry) for entry in settings.flux_objects),
            pod_selector=str(template),
            component_selectors={str(k): str(v) for k, v in dict(overrides).items()},
        )

    def selector(self, component: str) -> str:
        if component in self.component_selectors:
            return self.component_selectors[component]
        return self.pod_selector.replace("{component}", component)


def _flux_key(entry: str) -> str:
    kind, _, name = entry.partition("/")
    return f"{kind.strip().lower()}/{name.strip()}"


# --- the service ----------------------------------------------------------------------------------


class RolloutService:
    """Restart, reconcile, status, pods and logs, within the allowlist."""

    def __init__(
        self,
        kube: KubernetesClient,
        config: RolloutConfig,
        *,
        redactor: Redactor | None = None,
        poll: PollPolicy = PollPolicy(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.config = config
        self.redactor = redactor or Redactor()
        self.poll = poll
        self.clock = clock

    @classmethod
    def from_settings(cls, kube: KubernetesClient, settings: Settings) -> RolloutService:
        """The service for the process: allowlists from the settings, every secret redacted."""
        return cls(
            kube,
            RolloutConfig.from_settings(settings),
            redactor=Redactor(secret_values(settings)),
        )

    async def close(self) -> None:
        """Close the Kubernetes client (and its one ApiClient)."""
        await self.kube.close()

    # --- allowlist --------------------------------------------------------------------------------

    def _allowed_target(self, target: str) -> None:
        if target not in self.config.rollout_targets:
            allowed = ", ".join(self.config.rollout_targets) or "none configured"
            raise NotAllowed(
                f"deployment {target!r} is not an allowed rollout target (allowed: {allowed})"
            )

    def _allowed_flux(self, kind: str, name: str) -> str:
        """The canonical kind key (`helmrelease`), after checking kind and allowlist."""
        key = kind_key(kind)
        if f"{key}/{name}" not in self.config.flux_objects:
            allowed = ", ".join(self.config.flux_objects) or "none configured"
            raise NotAllowed(f"{key}/{name} is not an allowed Flux object (allowed: {allowed})")
        return key

    def _allowed_component(self, component: str) -> str:
        known = set(self.config.components) | set(self.config.component_selectors)
        if component not in known or not _LABEL_VALUE.match(component):
            raise NotAllowed(f"unknown component {component!r} (known: {', '.join(sorted(known))})")
        return self.config.selector(component)

    # --- deployments ------------------------------------------------------------------------------

    async def status(self, target: str) -> DeploymentStatus:
        """The deployment's current spec and rollout status."""
        self._allowed_target(target)
        return await self.kube.get_deployment(target)

    async def restart(
        self,
        target: str,
        progress: RolloutCallback | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - bounds the following, not one await
    ) -> RolloutResult:
        """`kubectl rollout restart` and `kubectl rollout status`, in one.

        Calls `progress` once the restart is requested, whenever the rollout moves, and at the
        end (complete, failed or timed_out). Raises RolloutFailed when the deployment exceeds its
        progress deadline and RolloutTimedOut when `timeout` seconds pass first.
        """
        self._allowed_target(target)
        loop = asyncio.get_running_loop()
        started = loop.time()
        requests = RequestCount()

        async def report(phase: RolloutPhase, message: str, deployment: DeploymentStatus) -> None:
            if progress is not None:
                event = RolloutProgress(
                    target, phase, message, deployment, loop.time() - started, requests.n
                )
                await call_safely(progress, event)

        async def judge(current: DeploymentStatus) -> str | None:
            message = current.describe()
            if current.observed and current.deadline_exceeded:
                await report("failed", message, current)
                raise RolloutFailed(f"rollout of {target} failed: {message}")
            if current.complete:
                await report("complete", message, current)
                return None
            return message

        async def progressing(message: str, current: DeploymentStatus) -> None:
            await report("progressing", message, current)

        requests.add()
        before = await self.kube.get_deployment(target)
        if before.paused:
            raise DeploymentPaused(
                f"deployment {target} is paused; resume it before restarting "
                "(kubectl rollout resume)"
            )
        requests.add()
        current = await self.kube.restart_deployment(target)
        log.info("restart requested: deployment %s in %s", target, self.kube.namespace)
        await report("requested", f"restart requested at {current.restarted_at}", current)

        followed = await follow(
            lambda: self.kube.get_deployment(target),
            judge,
            progressing,
            current=current,
            deadline=started + timeout,
            policy=self.poll,
            requests=requests,
        )
        current = followed.state
        if followed.settled:
            return RolloutResult(
                target, current.restarted_at, current, loop.time() - started, requests.n
            )
        reason = current.describe()
        if followed.lost is not None:
            reason += f" (the last poll failed: {followed.lost})"
        problems = await self._pod_problems(current)
        if problems is not None:
            requests.add()
        await report("timed_out", reason, current)
        detail = f"; {problems}" if problems else ""
        raise RolloutTimedOut(f"rollout of {target} timed out after {timeout:g}s: {reason}{detail}")

    async def _pod_problems(self, deployment: DeploymentStatus) -> str | None:
        """Why the deployment's pods are not ready (CrashLoopBackOff...), to explain a timeout;
        None when the pods could not be asked about (no request was then sent)."""
        if not deployment.selector:
            return None
        selector = ",".join(f"{k}={v}" for k, v in sorted(deployment.selector.items()))
        try:
            # The rollout has already run out of time: this explanation gets a few seconds more.
            async with asyncio.timeout(DIAGNOSE_TIMEOUT):
                pods = await self.kube.list_pods(selector)
        except (KubernetesForbidden, KubernetesNotFound, UpstreamError, Unavailable, TimeoutError):
            return ""
        troubled = [f"pod {p.name}: {p.problem}" for p in pods if not p.ready and p.problem]
        return self.redactor.redact("; ".join(troubled[:3]))

    # --- Flux -------------------------------------------------------------------------------------

    async def flux_status(self, kind: str | None = None) -> list[FluxObjectStatus]:
        """Every allowed Flux object (of `kind`, when given) with Ready, revision, message and
        the suspended flag. An object that cannot be read is listed with the reason."""
        wanted = kind_key(kind) if kind is not None else None
        entries = [
            entry
            for entry in self.config.flux_objects
            if wanted is None or entry.partition("/")[0] == wanted
        ]

        async def one(entry: str) -> FluxObjectStatus:
            key, _, name = entry.partition("/")
            try:
                return await self.kube.get_flux_object(key, name)
            except (KubernetesNotFound, KubernetesForbidden) as exc:
                return unreadable(key, name, self.kube.namespace, exc)

        return list(await asyncio.gather(*(one(entry) for entry in entries)))

    async def flux_reconcile(
        self,
        kind: str,
        name: str,
        with_source: bool = False,
        progress: FluxCallback | None = None,
        *,
        force: bool = False,
        reset: bool = False,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - bounds the following, not one await
    ) -> FluxReconcileResult:
        """`flux reconcile <kind> <name> [--with-source] [--force] [--reset]`.

        With `with_source`, the referenced GitRepository (which must be allowed too) is
        reconciled first and must become Ready. Then the object is annotated and followed until
        Flux has handled exactly this request (`status.lastHandledReconcileAt` equals the token)
        and Ready is True (returned) or False (ReconcileFailed).
        """
        key = self._allowed_flux(kind, name)
        if (force or reset) and key != "helmrelease":
            raise InvalidInput("force and reset apply to a HelmRelease only")
        loop = asyncio.get_running_loop()
        started = loop.time()
        requests = RequestCount()

        async def one(
            one_key: str, one_name: str, *, force: bool = False, reset: bool = False
        ) -> tuple[FluxObjectStatus, str]:
            token = rfc3339_nano(self.clock())
            status = await reconcile(
                self.kube,
                one_key,
                one_name,
                token,
                progress=progress,
                policy=self.poll,
                started=started,
                deadline=started + timeout,
                requests=requests,
                force=force,
                reset=reset,
            )
            return status, token

        current = await self.kube.get_flux_object(key, name)
        requests.add()
        refuse_suspended(current)

        source_status: FluxObjectStatus | None = None
        if with_source:
            source = current.source
            if source is None:
                raise InvalidInput(f"{key}/{name} has no source reference to reconcile")
            if source.kind != "GitRepository":
                raise InvalidInput(
                    f"{key}/{name} takes its source from a {source.kind}; only a GitRepository "
                    "source can be reconciled from here"
                )
            source_key = f"gitrepository/{source.name}"
            if (
                source_key not in self.config.flux_objects
                or source.namespace != self.kube.namespace
            ):
                raise NotAllowed(
                    f"the source of {key}/{name}, gitrepository {source.namespace}/{source.name},"
                    " is not an allowed Flux object"
                )
            source_now = await self.kube.get_flux_object("gitrepository", source.name)
            requests.add()
            refuse_suspended(source_now)
            source_status, _ = await one("gitrepository", source.name)

        final, token = await one(key, name, force=force, reset=reset)
        return FluxReconcileResult(final, source_status, token, loop.time() - started, requests.n)

    # --- pods and logs ----------------------------------------------------------------------------

    async def pods(self, component: str | None = None) -> list[PodInfo]:
        """The pods of one component, or of every component, with phase, readiness, restarts
        and age."""
        selector = (
            self._allowed_component(component)
            if component is not None
            else self.config.all_pods_selector
        )
        return await self.kube.list_pods(selector)

    async def logs(
        self, component: str, lines: int = 100, since: float | timedelta | None = None
    ) -> list[LogChunk]:
        """The last `lines` lines (within the last `since` seconds, when given) of each pod of
        the component, with every secret redacted."""
        selector = self._allowed_component(component)
        if not 1 <= lines <= MAX_LOG_LINES:
            raise InvalidInput(f"lines must be between 1 and {MAX_LOG_LINES}")
        since_seconds: int | None = None
        if since is not None:
            seconds = since.total_seconds() if isinstance(since, timedelta) else float(since)
            if seconds <= 0:
                raise InvalidInput("since must be a positive number of seconds")
            since_seconds = max(1, int(seconds))
        pods = (await self.kube.list_pods(selector))[:MAX_LOG_PODS]

        async def one(pod: PodInfo) -> LogChunk:
            try:
                text = await self.kube.pod_log(
                    pod.name,
                    container=pod.default_container,
                    tail_lines=lines,
                    since_seconds=since_seconds,
                )
            except KubernetesNotFound as exc:  # the pod went away between list and read
                return LogChunk(pod.name, pod.default_container, [], exc.message)
            return LogChunk(
                pod.name, pod.default_container, [self.redactor.redact(line) for line in text]
            )

        return list(await asyncio.gather(*(one(pod) for pod in pods)))
