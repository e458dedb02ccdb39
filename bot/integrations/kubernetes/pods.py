"""Our own view of a pod, and one pod's log lines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s


@dataclass(frozen=True)
class PodInfo:
    name: str
    phase: str
    ready: bool
    ready_containers: int
    containers: int
    restarts: int
    age: timedelta | None
    node: str | None
    labels: dict[str, str]
    # Why a container is not running or not ready: CrashLoopBackOff, ImagePullBackOff, ...
    problem: str | None
    default_container: str | None


@dataclass(frozen=True)
class LogChunk:
    pod: str
    container: str | None
    lines: list[str]
    error: str | None = None  # when this pod's log could not be read; the others still are


def pod_from(pod: k8s.V1Pod, now: datetime) -> PodInfo:
    from kubernetes_asyncio import client as k8s

    meta = pod.metadata
    spec = pod.spec
    status = pod.status or k8s.V1PodStatus()
    statuses = status.container_statuses or []
    problem = None
    for container in statuses:
        state = container.state
        if state is not None and state.waiting is not None and state.waiting.reason:
            problem = f"{container.name}: {state.waiting.reason}"
            break
        if state is not None and state.terminated is not None and state.terminated.reason:
            problem = f"{container.name}: {state.terminated.reason}"
            break
    if problem is None and status.reason:
        problem = status.reason
    created = meta.creation_timestamp
    annotations = meta.annotations or {}
    containers = [c.name for c in (spec.containers if spec else None) or []]
    default_container = annotations.get("kubectl.kubernetes.io/default-container") or (
        containers[0] if containers else None
    )
    ready_condition = next((c for c in status.conditions or [] if c.type == "Ready"), None)
    return PodInfo(
        name=meta.name,
        phase=status.phase or "Unknown",
        ready=ready_condition is not None and ready_condition.status == "True",
        ready_containers=sum(1 for c in statuses if c.ready),
        containers=len(containers) or len(statuses),
        restarts=sum(c.restart_count or 0 for c in statuses),
        age=(now - created) if isinstance(created, datetime) else None,
        node=spec.node_name if spec else None,
        labels=dict(meta.labels or {}),
        problem=problem,
        default_container=default_container,
    )
