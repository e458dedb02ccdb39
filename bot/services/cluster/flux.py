"""Flux reconciles as `flux reconcile` makes them: annotate the object, then follow it until
Flux has handled exactly this request and says Ready (or not)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bot.errors import Conflict, InvalidInput, UpstreamError
from bot.integrations.kubernetes import (
    FLUX_KINDS,
    FluxObjectStatus,
    KubernetesClient,
    KubernetesNotFound,
    flux_kind,
)
from bot.services.cluster.polling import PollPolicy, RequestCount, call_safely, follow

log = logging.getLogger(__name__)


class FluxSuspended(Conflict):
    """A suspended Flux object ignores reconcile requests; flux refuses them, and so do we."""


class ReconcileFailed(UpstreamError):
    """Flux handled the request and reports Ready=False."""

    code = "reconcile_failed"


class ReconcileTimedOut(UpstreamError):
    """Flux did not handle the request within the timeout."""

    code = "reconcile_timed_out"
    status = 504


FluxPhase = Literal["requested", "waiting", "ready", "failed", "timed_out"]


@dataclass(frozen=True)
class FluxProgress:
    """One step of a reconciliation: of the source first (with_source), then the object."""

    kind: str
    name: str
    phase: FluxPhase
    message: str
    revision: str | None
    status: FluxObjectStatus
    elapsed: float
    requests: int


@dataclass(frozen=True)
class FluxReconcileResult:
    object: FluxObjectStatus
    source: FluxObjectStatus | None
    token: str
    elapsed: float
    requests: int

    @property
    def revision(self) -> str | None:
        return self.object.revision

    @property
    def message(self) -> str:
        return self.object.message


FluxCallback = Callable[[FluxProgress], Awaitable[None]]


async def reconcile(
    kube: KubernetesClient,
    key: str,
    name: str,
    token: str,
    *,
    progress: FluxCallback | None,
    policy: PollPolicy,
    started: float,
    deadline: float,
    requests: RequestCount,
    force: bool = False,
    reset: bool = False,
) -> FluxObjectStatus:
    """Request the reconcile of one object with `token` and follow it until it is Ready
    (returned), Ready=False (ReconcileFailed) or `deadline` passes (ReconcileTimedOut)."""
    loop = asyncio.get_running_loop()
    kind_name = FLUX_KINDS[key].kind

    async def report(phase: FluxPhase, message: str, status: FluxObjectStatus) -> None:
        if progress is not None:
            event = FluxProgress(
                kind_name,
                name,
                phase,
                message,
                status.revision,
                status,
                loop.time() - started,
                requests.n,
            )
            await call_safely(progress, event)

    async def judge(current: FluxObjectStatus) -> str | None:
        handled = current.last_handled_reconcile_at == token
        settled = (
            handled
            and current.ready is not None
            and not current.reconciling
            # Flux records observedGeneration; tolerate an object that does not.
            and (
                current.observed_generation == 0
                or current.observed_generation >= current.generation
            )
        )
        if settled and current.ready:
            await report("ready", current.message or "ready", current)
            return None
        if settled:
            await report("failed", current.message, current)
            raise ReconcileFailed(
                f"{key}/{name} reconciliation failed: {current.message or current.reason}"
            )
        if not handled:
            return "waiting for Flux to pick up the request"
        return f"reconciling: {current.message or current.reason or 'in progress'}"

    async def waiting(message: str, current: FluxObjectStatus) -> None:
        await report("waiting", message, current)

    current = await kube.request_reconcile(key, name, token, force=force, reset=reset)
    requests.add()
    log.info("reconcile requested: %s/%s in %s", key, name, kube.namespace)
    await report("requested", f"reconciliation of {key}/{name} requested", current)

    followed = await follow(
        lambda: kube.get_flux_object(key, name),
        judge,
        waiting,
        current=current,
        deadline=deadline,
        policy=policy,
        requests=requests,
    )
    current = followed.state
    if followed.settled:
        return current
    waited = (
        "Flux has not picked up the request"
        if current.last_handled_reconcile_at != token
        else f"not ready yet: {current.message or current.reason or 'no Ready condition'}"
    )
    if followed.lost is not None:
        waited += f" (the last poll failed: {followed.lost})"
    await report("timed_out", waited, current)
    raise ReconcileTimedOut(f"{key}/{name} reconciliation timed out: {waited}")


def kind_key(kind: str) -> str:
    """The canonical key of a Flux kind (`helmrelease`); InvalidInput for an unknown one."""
    try:
        api = flux_kind(kind)
    except KeyError:
        raise InvalidInput(f"unknown Flux kind {kind!r} (known: {', '.join(FLUX_KINDS)})") from None
    return api.kind.lower()


def refuse_suspended(status: FluxObjectStatus) -> None:
    if status.suspended:
        raise FluxSuspended(
            f"{status.kind.lower()}/{status.name} is suspended; resume it first "
            f"(flux resume {status.kind.lower()} {status.name})"
        )


def unreadable(key: str, name: str, namespace: str, exc: Exception) -> FluxObjectStatus:
    """The status shown for an allowed object that cannot be read (absent, or forbidden)."""
    reason = "NotFound" if isinstance(exc, KubernetesNotFound) else "Forbidden"
    return FluxObjectStatus(
        kind=FLUX_KINDS[key].kind,
        name=name,
        namespace=namespace,
        ready=False,
        reason=reason,
        message=str(exc),
        revision=None,
        suspended=False,
        generation=0,
        observed_generation=0,
        last_handled_reconcile_at=None,
        requested_at=None,
    )
