"""A fake Kubernetes API server for kubernetes-asyncio to talk to over HTTP, on 127.0.0.1.

It serves the part of the API Conductor-E uses, in the API's documented shapes, one module per
API group and resource, each holding its paths, state and test controls:

* `server` — what every request goes through: the bearer token, RBAC's 403 (`forbid()`), an
  outage (`outage()`), NotFound for an unknown path, and the recorded `requests`;
* `apps` — apps/v1 deployments: get, and the patch `kubectl rollout restart` sends, with a
  rollout that follows a program the test controls;
* `pods` — core/v1 pods: list with a labelSelector, and pods/{name}/log;
* `flux` — the Flux custom resources (Kustomization, HelmRelease, GitRepository): get, list,
  and the patch `flux reconcile` sends, handled as the test chooses.

It checks what the real tools send and refuses anything else as the API server would: an
unknown patch media type is 415, a strategic merge patch on a custom resource is 415, a patch
of another shape is 422 (the fake accepts the kubectl and flux patches only).
"""

from __future__ import annotations

from tests.fakes.kubernetes.apps import (
    RESTARTED_AT,
    Apps,
    FakeDeployment,
    Step,
    deadline_exceeded,
    healthy_rollout,
    never_ready,
)
from tests.fakes.kubernetes.flux import (
    FLUX,
    FLUX_API,
    FORCE_AT,
    REQUESTED_AT,
    RESET_AT,
    FakeFluxObject,
    Flux,
    Reconcile,
)
from tests.fakes.kubernetes.pods import FakePod, Pods, parse_selector
from tests.fakes.kubernetes.server import PATCH_TYPES, RFC3339, RecordedRequest, now_rfc3339


class FakeKubernetes(Apps, Pods, Flux):
    """Start with `async with FakeKubernetes() as kube:`; `kube.url` is the API server."""


__all__ = [
    "FLUX",
    "FLUX_API",
    "FORCE_AT",
    "PATCH_TYPES",
    "REQUESTED_AT",
    "RESET_AT",
    "RESTARTED_AT",
    "RFC3339",
    "FakeDeployment",
    "FakeFluxObject",
    "FakeKubernetes",
    "FakePod",
    "Reconcile",
    "RecordedRequest",
    "Step",
    "deadline_exceeded",
    "healthy_rollout",
    "never_ready",
    "now_rfc3339",
    "parse_selector",
]
