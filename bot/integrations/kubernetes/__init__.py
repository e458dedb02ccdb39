"""Kubernetes through kubernetes-asyncio: deployments, Flux objects, pods and their logs, as our
own dataclasses, never kubernetes-asyncio models. Callers import from here; the modules are
`errors`, `config`, `models` (deployments, conditions), `flux`, `pods` and `client`.
"""

from bot.integrations.kubernetes.client import (
    MERGE_PATCH,
    REQUEST_TIMEOUT,
    STRATEGIC_MERGE_PATCH,
    KubernetesClient,
)
from bot.integrations.kubernetes.config import SERVICE_ACCOUNT_DIR, in_cluster, load_configuration
from bot.integrations.kubernetes.errors import (
    ClusterUnavailable,
    KubernetesError,
    KubernetesForbidden,
    KubernetesNotFound,
    translate,
)
from bot.integrations.kubernetes.flux import (
    FLUX_KINDS,
    FORCE_AT,
    REQUESTED_AT,
    RESET_AT,
    FluxKind,
    FluxObjectStatus,
    SourceRef,
    flux_kind,
    rfc3339_nano,
)
from bot.integrations.kubernetes.models import RESTARTED_AT, Condition, DeploymentStatus, rfc3339
from bot.integrations.kubernetes.pods import LogChunk, PodInfo

__all__ = [
    "FLUX_KINDS",
    "FORCE_AT",
    "MERGE_PATCH",
    "REQUESTED_AT",
    "REQUEST_TIMEOUT",
    "RESET_AT",
    "RESTARTED_AT",
    "SERVICE_ACCOUNT_DIR",
    "STRATEGIC_MERGE_PATCH",
    "ClusterUnavailable",
    "Condition",
    "DeploymentStatus",
    "FluxKind",
    "FluxObjectStatus",
    "KubernetesClient",
    "KubernetesError",
    "KubernetesForbidden",
    "KubernetesNotFound",
    "LogChunk",
    "PodInfo",
    "SourceRef",
    "flux_kind",
    "in_cluster",
    "load_configuration",
    "rfc3339",
    "rfc3339_nano",
    "translate",
]
