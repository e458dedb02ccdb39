"""Flux's custom resources as our own dataclasses, and the annotations `flux reconcile` writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.integrations.kubernetes.models import Condition, conditions_from

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
FORCE_AT = "reconcile.fluxcd.io/forceAt"
RESET_AT = "reconcile.fluxcd.io/resetAt"


@dataclass(frozen=True)
class FluxKind:
    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


FLUX_KINDS: dict[str, FluxKind] = {
    "kustomization": FluxKind(
        "Kustomization", "kustomize.toolkit.fluxcd.io", "v1", "kustomizations"
    ),
    "helmrelease": FluxKind("HelmRelease", "helm.toolkit.fluxcd.io", "v2", "helmreleases"),
    "gitrepository": FluxKind("GitRepository", "source.toolkit.fluxcd.io", "v1", "gitrepositories"),
}


def flux_kind(kind: str) -> FluxKind:
    """The API of a Flux kind given as `kustomization`, `Kustomization`, `hr`..."""
    key = kind.lower()
    key = {"ks": "kustomization", "hr": "helmrelease", "gitrepo": "gitrepository"}.get(key, key)
    if key not in FLUX_KINDS:
        raise KeyError(kind)
    return FLUX_KINDS[key]


@dataclass(frozen=True)
class SourceRef:
    """What a Kustomization or HelmRelease takes its source from."""

    kind: str  # as Flux writes it: GitRepository, OCIRepository, HelmRepository, HelmChart...
    name: str
    namespace: str


@dataclass(frozen=True)
class FluxObjectStatus:
    kind: str  # Kustomization, HelmRelease, GitRepository
    name: str
    namespace: str
    ready: bool | None  # None while Ready is Unknown or absent
    reason: str
    message: str
    revision: str | None
    suspended: bool
    generation: int
    observed_generation: int
    last_handled_reconcile_at: str | None
    requested_at: str | None
    source: SourceRef | None = None
    conditions: tuple[Condition, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind.lower()}/{self.name}"

    @property
    def reconciling(self) -> bool:
        reconciling = next((c for c in self.conditions if c.type == "Reconciling"), None)
        return reconciling is not None and reconciling.status == "True"


def rfc3339_nano(at: datetime) -> str:
    """The token `flux reconcile` writes (Go's time.RFC3339Nano; Python stops at microseconds)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    text = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    # RFC3339Nano drops trailing zeros of the fraction, and the dot with them.
    head, dot, rest = text.partition(".")
    if not dot:
        return text
    digits = rest[:6].rstrip("0")
    zone = rest[6:]
    return f"{head}.{digits}{zone}" if digits else f"{head}{zone}"


def _flux_revision(kind: str, status: Mapping[str, Any]) -> str | None:
    if kind == "GitRepository":
        artifact = status.get("artifact") or {}
        return artifact.get("revision") or None
    # A Kustomization's applied revision is the source revision; a HelmRelease v2 records the
    # chart version it last attempted (lastAppliedRevision only exists in older APIs).
    return status.get("lastAppliedRevision") or status.get("lastAttemptedRevision") or None


def _source_ref(kind: str, obj: Mapping[str, Any], namespace: str) -> SourceRef | None:
    spec = obj.get("spec") or {}
    ref: Mapping[str, Any] | None = None
    if kind == "Kustomization":
        ref = spec.get("sourceRef")
    elif kind == "HelmRelease":
        ref = spec.get("chartRef") or ((spec.get("chart") or {}).get("spec") or {}).get("sourceRef")
    if not ref or not ref.get("name"):
        return None
    return SourceRef(
        kind=str(ref.get("kind", "")),
        name=str(ref["name"]),
        namespace=str(ref.get("namespace") or namespace),
    )


def flux_status_from(api: FluxKind, obj: Mapping[str, Any]) -> FluxObjectStatus:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    conditions = conditions_from(status.get("conditions"))
    ready = next((c for c in conditions if c.type == "Ready"), None)
    namespace = str(meta.get("namespace") or "")
    return FluxObjectStatus(
        kind=api.kind,
        name=str(meta.get("name", "")),
        namespace=namespace,
        ready=None if ready is None or ready.status == "Unknown" else ready.status == "True",
        reason=ready.reason if ready else "",
        message=ready.message if ready else "",
        revision=_flux_revision(api.kind, status),
        suspended=bool((obj.get("spec") or {}).get("suspend", False)),
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        last_handled_reconcile_at=status.get("lastHandledReconcileAt"),
        requested_at=(meta.get("annotations") or {}).get(REQUESTED_AT),
        source=_source_ref(api.kind, obj, namespace),
        conditions=conditions,
    )
