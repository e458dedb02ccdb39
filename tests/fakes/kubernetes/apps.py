"""apps/v1 deployments: `GET /apis/apps/v1/namespaces/{ns}/deployments/{name}`, and the
strategic merge patch `kubectl rollout restart` sends (exactly
spec.template.metadata.annotations[kubectl.kubernetes.io/restartedAt], RFC 3339 in whole
seconds; another media type is 415, another shape 422). A restart bumps metadata.generation
and starts a rollout whose status follows a program of `Step`s the test controls: one step per
GET (`auto`), one step per `advance(name)`, or one step per `step_seconds` of wall-clock time
(for the benchmark). `restart_patches` keeps every restart patch."""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from tests.fakes.kubernetes.server import (
    PATCH_TYPES,
    RecordedRequest,
    Reply,
    Server,
    error_status,
    invalid,
    json_response,
    now_rfc3339,
    unsupported_media,
)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# kubectl writes time.RFC3339: whole seconds.
RFC3339_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")


# --- rollout programs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A deployment's status at one step of a rollout."""

    observed: bool
    replicas: int
    updated: int
    ready: int
    available: int
    progressing: tuple[str, str, str] | None = None  # (status, reason, message)


def healthy_rollout(replicas: int = 2) -> list[Step]:
    """Surge one new pod at a time until every replica is new and available."""
    r = replicas
    return [
        Step(False, r, r, r, r),
        Step(True, r + 1, 1, r, r, ("True", "ReplicaSetUpdated", "rolling out")),
        Step(True, r + 1, r, r + 1, r + 1, ("True", "ReplicaSetUpdated", "rolling out")),
        Step(True, r, r, r - 1, r - 1, ("True", "ReplicaSetUpdated", "rolling out")),
        Step(True, r, r, r, r, ("True", "NewReplicaSetAvailable", "has successfully progressed")),
    ]


def never_ready(replicas: int = 2) -> list[Step]:
    """The new pod never becomes ready (it crash-loops); the last step repeats forever."""
    r = replicas
    return [
        Step(False, r, r, r, r),
        Step(True, r + 1, 1, r, r, ("True", "ReplicaSetUpdated", "rolling out")),
    ]


def deadline_exceeded(name: str, replicas: int = 2) -> list[Step]:
    """The new ReplicaSet makes no progress within progressDeadlineSeconds."""
    r = replicas
    return [
        Step(False, r, r, r, r),
        Step(True, r + 1, 1, r, r, ("True", "ReplicaSetUpdated", "rolling out")),
        Step(
            True,
            r + 1,
            1,
            r,
            r,
            (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{name}-7d9f8b6c5d" has timed out progressing.',
            ),
        ),
    ]


@dataclass
class FakeDeployment:
    obj: dict[str, Any]
    program: list[Step]
    auto: bool = True  # one step per GET after a restart
    step_seconds: float | None = None  # or one step per this many seconds after a restart
    step: int = -1  # -1: no rollout in progress
    old_generation: int = 1
    restarted_monotonic: float = 0.0


class Apps(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deployments: dict[str, FakeDeployment] = {}
        self.restart_patches: list[tuple[str, dict[str, Any]]] = []

    # --- test controls ----------------------------------------------------------------------

    def add_deployment(
        self,
        name: str,
        *,
        replicas: int = 2,
        program: list[Step] | None = None,
        auto: bool = True,
        step_seconds: float | None = None,
        paused: bool = False,
        component: str | None = None,
    ) -> FakeDeployment:
        labels = {"app.kubernetes.io/name": "conductor-e", "app.kubernetes.io/instance": name}
        if component:
            labels["app.kubernetes.io/component"] = component
        obj = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "uid": f"uid-{name}",
                "generation": 1,
                "resourceVersion": "1",
                "creationTimestamp": now_rfc3339(self.clock() - timedelta(days=1)),
                "labels": dict(labels),
            },
            "spec": {
                "replicas": replicas,
                "paused": paused,
                "progressDeadlineSeconds": 600,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": dict(labels)},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                },
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"containers": [{"name": "main", "image": "conductor-e:test"}]},
                },
            },
            "status": {},
        }
        deployment = FakeDeployment(
            obj, program or healthy_rollout(replicas), auto=auto, step_seconds=step_seconds
        )
        self._set_status(deployment, Step(True, replicas, replicas, replicas, replicas))
        self.deployments[name] = deployment
        return deployment

    def deployment(self, name: str) -> dict[str, Any]:
        return self.deployments[name].obj

    def advance(self, name: str, steps: int = 1) -> None:
        """Move a rollout on by `steps` (for a deployment added with auto=False)."""
        deployment = self.deployments[name]
        for _ in range(steps):
            self._step(deployment)

    # --- HTTP ---------------------------------------------------------------------------------

    def _route(self, method: str, parts: list[str], req: RecordedRequest) -> web.Response:
        # /apis/apps/v1/namespaces/{ns}/deployments/{name}
        if parts[:3] == ["apis", "apps", "v1"] and len(parts) == 7 and parts[5] == "deployments":
            ns, name = parts[4], parts[6]
            if method == "GET":
                self._check_rbac("get", "deployments", "apps", name, ns)
                return json_response(self._get_deployment(name))
            if method == "PATCH":
                self._check_rbac("patch", "deployments", "apps", name, ns)
                return json_response(self._patch_deployment(name, req))
        return super()._route(method, parts, req)

    def _find_deployment(self, name: str) -> FakeDeployment:
        if name not in self.deployments:
            raise Reply(
                error_status(
                    404,
                    "NotFound",
                    f'deployments.apps "{name}" not found',
                    {"name": name, "group": "apps", "kind": "deployments"},
                )
            )
        return self.deployments[name]

    def _get_deployment(self, name: str) -> dict[str, Any]:
        deployment = self._find_deployment(name)
        if deployment.step >= 0:
            if deployment.step_seconds is not None:
                elapsed = time.monotonic() - deployment.restarted_monotonic
                target = min(int(elapsed / deployment.step_seconds), len(deployment.program) - 1)
                while deployment.step < target:
                    self._step(deployment)
            elif deployment.auto:
                self._step(deployment)
        return copy.deepcopy(deployment.obj)

    def _patch_deployment(self, name: str, req: RecordedRequest) -> dict[str, Any]:
        deployment = self._find_deployment(name)
        if req.content_type not in PATCH_TYPES:
            raise Reply(unsupported_media(req.content_type, strategic=True))
        if req.content_type != "application/strategic-merge-patch+json":
            raise Reply(invalid(name, "deployments.apps", "the fake accepts kubectl's patch"))
        body = req.body
        try:
            annotations = body["spec"]["template"]["metadata"]["annotations"]
            shape_ok = (
                set(body) == {"spec"}
                and set(body["spec"]) == {"template"}
                and set(body["spec"]["template"]) == {"metadata"}
                and set(body["spec"]["template"]["metadata"]) == {"annotations"}
                and set(annotations) == {RESTARTED_AT}
            )
        except (KeyError, TypeError):
            shape_ok = False
        if not shape_ok:
            raise Reply(
                invalid(
                    name,
                    "deployments.apps",
                    "expected exactly spec.template.metadata.annotations"
                    f"[{RESTARTED_AT}], as kubectl rollout restart sends",
                )
            )
        stamp = annotations[RESTARTED_AT]
        if not isinstance(stamp, str) or not RFC3339_SECONDS.match(stamp):
            raise Reply(invalid(name, "deployments.apps", f"{RESTARTED_AT} is not RFC 3339"))
        self.restart_patches.append((name, body))
        template_meta = deployment.obj["spec"]["template"]["metadata"]
        before = dict(template_meta.get("annotations") or {})
        template_meta.setdefault("annotations", {})[RESTARTED_AT] = stamp
        if template_meta["annotations"] != before:
            meta = deployment.obj["metadata"]
            deployment.old_generation = meta["generation"]
            meta["generation"] += 1
            meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
            deployment.step = -1
            deployment.restarted_monotonic = time.monotonic()
            # The controller has not seen the new generation yet.
            self._step(deployment)
        return copy.deepcopy(deployment.obj)

    # --- the rollout --------------------------------------------------------------------------

    def _step(self, deployment: FakeDeployment) -> None:
        deployment.step = min(deployment.step + 1, len(deployment.program) - 1)
        self._set_status(deployment, deployment.program[deployment.step])

    @staticmethod
    def _set_status(deployment: FakeDeployment, step: Step) -> None:
        meta = deployment.obj["metadata"]
        generation = meta["generation"] if step.observed else deployment.old_generation
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "replicas": step.replicas,
            "updatedReplicas": step.updated,
            "readyReplicas": step.ready,
            "availableReplicas": step.available,
        }
        unavailable = step.replicas - step.available
        if unavailable > 0:
            status["unavailableReplicas"] = unavailable
        desired = deployment.obj["spec"]["replicas"]
        conditions = [
            {
                "type": "Available",
                "status": "True" if step.available >= desired - 1 else "False",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
                "lastUpdateTime": now_rfc3339(),
                "lastTransitionTime": now_rfc3339(),
            }
        ]
        if step.progressing is not None:
            p_status, p_reason, p_message = step.progressing
            conditions.append(
                {
                    "type": "Progressing",
                    "status": p_status,
                    "reason": p_reason,
                    "message": p_message,
                    "lastUpdateTime": now_rfc3339(),
                    "lastTransitionTime": now_rfc3339(),
                }
            )
        status["conditions"] = conditions
        deployment.obj["status"] = status
