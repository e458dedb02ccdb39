"""Our own view of a deployment and of the conditions every object reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class DeploymentStatus:
    """A deployment's spec and status, as far as following a rollout needs them."""

    name: str
    namespace: str
    generation: int
    observed_generation: int
    desired_replicas: int
    replicas: int
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    unavailable_replicas: int
    paused: bool
    progress_deadline_seconds: int | None
    restarted_at: str | None
    selector: dict[str, str] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def deadline_exceeded(self) -> bool:
        progressing = self.condition("Progressing")
        return progressing is not None and progressing.reason == "ProgressDeadlineExceeded"

    @property
    def observed(self) -> bool:
        return self.observed_generation >= self.generation

    @property
    def complete(self) -> bool:
        """kubectl's rule: spec observed, every replica updated, old ones gone, all available."""
        return (
            self.observed
            and not self.deadline_exceeded
            and self.updated_replicas >= self.desired_replicas
            and self.replicas <= self.updated_replicas
            and self.available_replicas >= self.updated_replicas
        )

    def describe(self) -> str:
        """What the rollout waits for, in the words `kubectl rollout status` uses."""
        if not self.observed:
            return "waiting for the deployment spec update to be observed"
        if self.deadline_exceeded:
            progressing = self.condition("Progressing")
            detail = progressing.message if progressing and progressing.message else ""
            return f"exceeded its progress deadline{': ' + detail if detail else ''}"
        if self.updated_replicas < self.desired_replicas:
            return (
                f"{self.updated_replicas} out of {self.desired_replicas} new replicas "
                "have been updated"
            )
        if self.replicas > self.updated_replicas:
            return f"{self.replicas - self.updated_replicas} old replicas are pending termination"
        if self.available_replicas < self.updated_replicas:
            return (
                f"{self.available_replicas} of {self.updated_replicas} updated replicas "
                "are available"
            )
        return "successfully rolled out"


def rfc3339(at: datetime) -> str:
    """The RFC 3339 form kubectl writes (Go's time.RFC3339: seconds, offset or Z)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    text = at.replace(microsecond=0).isoformat()
    return text.replace("+00:00", "Z")


def conditions_from(raw: Any) -> tuple[Condition, ...]:
    found = []
    for item in raw or []:
        if isinstance(item, dict):
            get = item.get
            found.append(
                Condition(
                    type=str(get("type", "")),
                    status=str(get("status", "Unknown")),
                    reason=str(get("reason") or ""),
                    message=str(get("message") or ""),
                )
            )
        else:
            found.append(
                Condition(
                    type=str(item.type),
                    status=str(item.status),
                    reason=str(item.reason or ""),
                    message=str(item.message or ""),
                )
            )
    return tuple(found)


def deployment_from(deployment: k8s.V1Deployment) -> DeploymentStatus:
    from kubernetes_asyncio import client as k8s

    meta = deployment.metadata
    spec = deployment.spec
    status = deployment.status or k8s.V1DeploymentStatus()
    template_meta = spec.template.metadata if spec.template else None
    annotations = (template_meta.annotations if template_meta else None) or {}
    selector = (spec.selector.match_labels if spec.selector else None) or {}
    return DeploymentStatus(
        name=meta.name,
        namespace=meta.namespace or "",
        generation=meta.generation or 0,
        observed_generation=status.observed_generation or 0,
        desired_replicas=spec.replicas if spec.replicas is not None else 1,
        replicas=status.replicas or 0,
        updated_replicas=status.updated_replicas or 0,
        ready_replicas=status.ready_replicas or 0,
        available_replicas=status.available_replicas or 0,
        unavailable_replicas=status.unavailable_replicas or 0,
        paused=bool(spec.paused),
        progress_deadline_seconds=spec.progress_deadline_seconds,
        restarted_at=annotations.get(RESTARTED_AT),
        selector=dict(selector),
        conditions=conditions_from(status.conditions),
    )
