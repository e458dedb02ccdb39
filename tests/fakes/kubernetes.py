"""A fake Kubernetes API server for kubernetes-asyncio to talk to over HTTP, on 127.0.0.1.

It serves the part of the API Conductor-E uses, in the API's documented shapes:

* apps/v1 deployments: get, and the strategic merge patch `kubectl rollout restart` sends,
  which bumps metadata.generation and starts a rollout whose status follows a program the
  test controls: one step per GET (`auto`), one step per `advance(name)`, or one step per
  `step_seconds` of wall-clock time (for the benchmark);
* core/v1 pods: list with a labelSelector, and pods/{name}/log with container, tailLines and
  sinceSeconds;
* the Flux custom resources (Kustomization v1, HelmRelease v2, GitRepository v1): get, list,
  and the merge patch `flux reconcile` sends; a reconcile request is handled after a number of
  GETs the test chooses, setting status.lastHandledReconcileAt and the Ready condition.

It checks what the real tools send and refuses anything else as the API server would: an
unknown patch media type is 415, a strategic merge patch on a custom resource is 415, a patch
of another shape is 422 (the fake accepts the kubectl and flux patches only). Requests need
`Authorization: Bearer <token>` (401 otherwise). `forbid()` makes chosen requests 403 with the
Status body RBAC returns; an unknown object is 404 with a NotFound Status. Every request is
recorded in `requests` for assertions.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes import serve

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
FORCE_AT = "reconcile.fluxcd.io/forceAt"
RESET_AT = "reconcile.fluxcd.io/resetAt"

PATCH_TYPES = {
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
# kubectl writes time.RFC3339: whole seconds.
RFC3339_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")

FLUX = {
    ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations"): "Kustomization",
    ("helm.toolkit.fluxcd.io", "v2", "helmreleases"): "HelmRelease",
    ("source.toolkit.fluxcd.io", "v1", "gitrepositories"): "GitRepository",
}
FLUX_API = {kind: key for key, kind in FLUX.items()}


def now_rfc3339(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).replace(microsecond=0).isoformat().replace("+00:00", "Z")


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


@dataclass(frozen=True)
class Reconcile:
    """How the fake Flux controller handles a reconcile request."""

    after_gets: int = 1  # GETs of the object that still show it reconciling
    outcome: str = "ready"  # ready | failed | never
    revision: str | None = None  # the revision it reports once handled
    message: str | None = None


@dataclass
class FakeFluxObject:
    obj: dict[str, Any]
    behaviour: Reconcile
    pending: str | None = None  # the token of a request not handled yet
    gets_since_request: int = 0


@dataclass
class FakePod:
    obj: dict[str, Any]
    logs: dict[str, list[tuple[datetime, str]]]  # container -> (time, line)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any
    authorization: str | None
    at: float = field(default=0.0)  # time.monotonic()


# --- the server -----------------------------------------------------------------------------------


class FakeKubernetes:
    """Start with `async with FakeKubernetes() as kube:`; `kube.url` is the API server."""

    def __init__(
        self,
        namespace: str = "conductor-e",
        token: str = "fake-service-account-token",
        user: str = "system:serviceaccount:conductor-e:conductor-e",
    ) -> None:
        self.namespace = namespace
        self.token = token
        self.user = user
        self.requests: list[RecordedRequest] = []
        self.deployments: dict[str, FakeDeployment] = {}
        self.flux: dict[tuple[str, str], FakeFluxObject] = {}  # (kind, name)
        self.pods: dict[str, FakePod] = {}
        self.reconcile_requests: list[tuple[str, str, dict[str, str]]] = []
        self.restart_patches: list[tuple[str, dict[str, Any]]] = []
        self._forbidden: list[tuple[str, str, str | None]] = []  # (verb, resource, name)
        self._outage = 0  # the next this-many requests get 503
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        # Optional hook called (await-free) before each request is answered, e.g. to count.
        self.on_request: Callable[[RecordedRequest], None] | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeKubernetes:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def write_kubeconfig(self, path: Path, context: str = "fake") -> Path:
        """A kubeconfig whose context points at this server with a bearer token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "conductor-e", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": context,
                    "context": {
                        "cluster": "fake",
                        "user": "conductor-e",
                        "namespace": self.namespace,
                    },
                }
            ],
            "current-context": context,
        }
        path.write_text(json.dumps(config))  # JSON is YAML
        return path

    # --- test controls: deployments ---------------------------------------------------------

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

    # --- test controls: Flux ----------------------------------------------------------------------

    def add_flux(
        self,
        kind: str,
        name: str,
        *,
        ready: bool | None = True,
        message: str = "Applied revision: main@sha1:1111111",
        revision: str | None = "main@sha1:1111111",
        suspended: bool = False,
        source: tuple[str, str, str | None] | None = None,  # (kind, name, namespace)
        reconcile: Reconcile = Reconcile(),
        namespace: str | None = None,
    ) -> FakeFluxObject:
        group, version, _plural = FLUX_API[kind]
        ns = namespace or self.namespace
        spec: dict[str, Any] = {"interval": "10m", "suspend": suspended}
        status: dict[str, Any] = {"observedGeneration": 1, "conditions": []}
        if kind == "Kustomization":
            spec.update(path="./apps/conductor-e", prune=True)
            if source:
                spec["sourceRef"] = _ref(source)
            status["lastAppliedRevision"] = revision
            status["lastAttemptedRevision"] = revision
        elif kind == "HelmRelease":
            chart: dict[str, Any] = {"chart": "./helm/conductor-e"}
            if source:
                chart["sourceRef"] = _ref(source)
            spec["chart"] = {"spec": chart}
            status["lastAttemptedRevision"] = revision
        else:
            spec.update(url="https://github.com/owner/conductor-e", ref={"branch": "main"})
            status["artifact"] = {
                "revision": revision,
                "path": "gitrepository/conductor-e/conductor-e/1111111.tar.gz",
                "url": "http://source-controller/1111111.tar.gz",
                "digest": "sha256:0",
                "lastUpdateTime": now_rfc3339(self.clock()),
            }
        obj = {
            "apiVersion": f"{group}/{version}",
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": ns,
                "generation": 1,
                "uid": f"uid-{kind}-{name}",
                "resourceVersion": "1",
                "creationTimestamp": now_rfc3339(self.clock() - timedelta(days=1)),
            },
            "spec": spec,
            "status": status,
        }
        flux = FakeFluxObject(obj, reconcile)
        self.set_flux_ready(flux, ready, "ReconciliationSucceeded" if ready else "Failed", message)
        self.flux[(kind, name)] = flux
        return flux

    def flux_object(self, kind: str, name: str) -> dict[str, Any]:
        return self.flux[(kind, name)].obj

    @staticmethod
    def set_flux_ready(flux: FakeFluxObject, ready: bool | None, reason: str, message: str) -> None:
        conditions = [c for c in flux.obj["status"]["conditions"] if c["type"] != "Ready"]
        conditions.append(
            {
                "type": "Ready",
                "status": "Unknown" if ready is None else str(ready),
                "reason": reason,
                "message": message,
                "observedGeneration": flux.obj["metadata"]["generation"],
                "lastTransitionTime": now_rfc3339(),
            }
        )
        flux.obj["status"]["conditions"] = conditions

    # --- test controls: pods and errors -----------------------------------------------------

    def add_pod(
        self,
        name: str,
        labels: dict[str, str],
        *,
        phase: str = "Running",
        ready: bool = True,
        restarts: int = 0,
        age: timedelta = timedelta(hours=1),
        containers: tuple[str, ...] = ("main",),
        waiting_reason: str | None = None,
        logs: dict[str, list[tuple[datetime, str]]] | list[tuple[datetime, str]] | None = None,
    ) -> FakePod:
        created = self.clock() - age
        statuses = []
        for container in containers:
            state: dict[str, Any]
            if waiting_reason:
                state = {"waiting": {"reason": waiting_reason, "message": "back-off 5m0s"}}
            else:
                state = {"running": {"startedAt": now_rfc3339(created)}}
            statuses.append(
                {
                    "name": container,
                    "ready": ready,
                    "restartCount": restarts,
                    "image": "conductor-e:test",
                    "imageID": "docker.io/conductor-e@sha256:0",
                    "started": not waiting_reason,
                    "state": state,
                }
            )
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "uid": f"uid-{name}",
                "labels": dict(labels),
                "creationTimestamp": now_rfc3339(created),
            },
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": c, "image": "conductor-e:test"} for c in containers],
            },
            "status": {
                "phase": phase,
                "startTime": now_rfc3339(created),
                "conditions": [
                    {"type": "Ready", "status": str(ready)},
                    {"type": "ContainersReady", "status": str(ready)},
                ],
                "containerStatuses": statuses,
            },
        }
        if isinstance(logs, list):
            logs = {containers[0]: logs}
        pod = FakePod(obj, logs or {})
        self.pods[name] = pod
        return pod

    def forbid(self, verb: str, resource: str, name: str | None = None) -> None:
        """Answer `verb` on `resource` ("deployments", "pods/log", "kustomizations"...), for
        one object or all, with RBAC's 403."""
        self._forbidden.append((verb, resource, name))

    def outage(self, requests: int) -> None:
        """Answer the next `requests` requests with 503, as an API server restarting does."""
        self._outage = requests

    def requests_to(self, method: str | None = None, path_part: str = "") -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and path_part in r.path
        ]

    # --- dispatch ---------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        content_type = request.headers.get("Content-Type")
        recorded = RecordedRequest(
            request.method,
            request.path,
            dict(request.query),
            content_type.split(";")[0].strip() if content_type else None,
            body,
            request.headers.get("Authorization"),
            time.monotonic(),
        )
        self.requests.append(recorded)
        if self.on_request is not None:
            self.on_request(recorded)
        if self._outage > 0:
            self._outage -= 1
            return _status(
                503, "ServiceUnavailable", "the server is currently unable to handle the request"
            )
        if recorded.authorization != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        parts = [p for p in request.path.split("/") if p]
        try:
            return self._route(request.method, parts, recorded)
        except _Reply as reply:
            return reply.response

    def _route(self, method: str, parts: list[str], req: RecordedRequest) -> web.Response:
        # /apis/apps/v1/namespaces/{ns}/deployments/{name}
        if parts[:3] == ["apis", "apps", "v1"] and len(parts) == 7 and parts[5] == "deployments":
            ns, name = parts[4], parts[6]
            if method == "GET":
                self._check_rbac("get", "deployments", "apps", name, ns)
                return _json(self._get_deployment(name))
            if method == "PATCH":
                self._check_rbac("patch", "deployments", "apps", name, ns)
                return _json(self._patch_deployment(name, req))
        # /api/v1/namespaces/{ns}/pods[/{name}/log]
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 5 and parts[4] == "pods":
            ns = parts[3]
            if len(parts) == 5 and method == "GET":
                self._check_rbac("list", "pods", "", None, ns)
                return _json(self._list_pods(req.query.get("labelSelector", "")))
            if len(parts) == 7 and parts[6] == "log" and method == "GET":
                self._check_rbac("get", "pods/log", "", parts[5], ns)
                return self._pod_log(parts[5], req.query)
        # /apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]
        if parts[:1] == ["apis"] and len(parts) in (6, 7) and parts[3] == "namespaces":
            key = (parts[1], parts[2], parts[5])
            if key in FLUX:
                kind = FLUX[key]
                group, plural = parts[1], parts[5]
                ns = parts[4]
                if len(parts) == 6 and method == "GET":
                    self._check_rbac("list", plural, group, None, ns)
                    items = [
                        copy.deepcopy(f.obj)
                        for (k, _), f in sorted(self.flux.items())
                        if k == kind and f.obj["metadata"]["namespace"] == ns
                    ]
                    return _json(
                        {
                            "apiVersion": f"{group}/{parts[2]}",
                            "kind": f"{kind}List",
                            "metadata": {"resourceVersion": "1"},
                            "items": items,
                        }
                    )
                if len(parts) == 7:
                    name = parts[6]
                    if method == "GET":
                        self._check_rbac("get", plural, group, name, ns)
                        return _json(self._get_flux(kind, name, ns))
                    if method == "PATCH":
                        self._check_rbac("patch", plural, group, name, ns)
                        return _json(self._patch_flux(kind, name, ns, req))
        return _status(404, "NotFound", "the server could not find the requested resource")

    def _check_rbac(
        self, verb: str, resource: str, group: str, name: str | None, namespace: str
    ) -> None:
        # The service account's Role is namespaced: anything in another namespace is refused.
        refused = namespace != self.namespace or any(
            f_verb == verb and f_resource == resource and f_name in (None, name)
            for f_verb, f_resource, f_name in self._forbidden
        )
        if refused:
            qualified = f"{resource}.{group}" if group else resource
            subject = f'{qualified} "{name}"' if name else qualified
            message = (
                f'{subject} is forbidden: User "{self.user}" cannot {verb} resource '
                f'"{resource}" in API group "{group}" in the namespace "{namespace}"'
            )
            details: dict[str, Any] = {"group": group, "kind": resource.split("/")[0]}
            if name:
                details["name"] = name
            raise _Reply(_status(403, "Forbidden", message, details))

    # --- deployments ------------------------------------------------------------------------------

    def _find_deployment(self, name: str) -> FakeDeployment:
        if name not in self.deployments:
            raise _Reply(
                _status(
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
            raise _Reply(_unsupported_media(req.content_type, strategic=True))
        if req.content_type != "application/strategic-merge-patch+json":
            raise _Reply(_invalid(name, "deployments.apps", "the fake accepts kubectl's patch"))
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
            raise _Reply(
                _invalid(
                    name,
                    "deployments.apps",
                    "expected exactly spec.template.metadata.annotations"
                    f"[{RESTARTED_AT}], as kubectl rollout restart sends",
                )
            )
        stamp = annotations[RESTARTED_AT]
        if not isinstance(stamp, str) or not RFC3339_SECONDS.match(stamp):
            raise _Reply(_invalid(name, "deployments.apps", f"{RESTARTED_AT} is not RFC 3339"))
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

    # --- Flux -------------------------------------------------------------------------------------

    def _find_flux(self, kind: str, name: str, namespace: str) -> FakeFluxObject:
        flux = self.flux.get((kind, name))
        if flux is None or flux.obj["metadata"]["namespace"] != namespace:
            group, _, plural = FLUX_API[kind]
            raise _Reply(
                _status(
                    404,
                    "NotFound",
                    f'{plural}.{group} "{name}" not found',
                    {"name": name, "group": group, "kind": plural},
                )
            )
        return flux

    def _get_flux(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        flux = self._find_flux(kind, name, namespace)
        if flux.pending is not None and flux.behaviour.outcome != "never":
            flux.gets_since_request += 1
            if flux.gets_since_request > flux.behaviour.after_gets:
                self._handle(flux, flux.pending)
        return copy.deepcopy(flux.obj)

    def _patch_flux(
        self, kind: str, name: str, namespace: str, req: RecordedRequest
    ) -> dict[str, Any]:
        flux = self._find_flux(kind, name, namespace)
        group, _, plural = FLUX_API[kind]
        resource = f"{plural}.{group}"
        if req.content_type not in PATCH_TYPES or req.content_type == (
            "application/strategic-merge-patch+json"
        ):
            # Custom resources do not support strategic merge patch.
            raise _Reply(_unsupported_media(req.content_type, strategic=False))
        if req.content_type != "application/merge-patch+json":
            raise _Reply(_invalid(name, resource, "the fake accepts flux's merge patch"))
        body = req.body
        allowed = {REQUESTED_AT} | ({FORCE_AT, RESET_AT} if kind == "HelmRelease" else set())
        try:
            annotations = body["metadata"]["annotations"]
            shape_ok = (
                set(body) == {"metadata"}
                and set(body["metadata"]) == {"annotations"}
                and REQUESTED_AT in annotations
                and set(annotations) <= allowed
                and all(isinstance(v, str) and RFC3339.match(v) for v in annotations.values())
            )
        except (KeyError, TypeError):
            shape_ok = False
        if not shape_ok:
            raise _Reply(
                _invalid(
                    name,
                    resource,
                    f"expected metadata.annotations[{REQUESTED_AT}] (RFC 3339), as flux sends",
                )
            )
        token = annotations[REQUESTED_AT]
        meta = flux.obj["metadata"]
        meta.setdefault("annotations", {}).update(annotations)
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        self.reconcile_requests.append((kind, name, dict(annotations)))
        flux.pending = token
        flux.gets_since_request = 0
        if flux.behaviour.outcome != "never":
            conditions = [c for c in flux.obj["status"]["conditions"] if c["type"] != "Reconciling"]
            conditions.append(
                {
                    "type": "Reconciling",
                    "status": "True",
                    "reason": "Progressing",
                    "message": "Reconciliation in progress",
                    "lastTransitionTime": now_rfc3339(),
                }
            )
            flux.obj["status"]["conditions"] = conditions
            self.set_flux_ready(flux, None, "Progressing", "Reconciliation in progress")
            if flux.behaviour.after_gets == 0:
                self._handle(flux, token)
        return copy.deepcopy(flux.obj)

    def _handle(self, flux: FakeFluxObject, token: str) -> None:
        behaviour = flux.behaviour
        status = flux.obj["status"]
        annotations = flux.obj["metadata"].get("annotations") or {}
        status["lastHandledReconcileAt"] = token
        if annotations.get(FORCE_AT) == token:
            status["lastHandledForceAt"] = token
        if annotations.get(RESET_AT) == token:
            status["lastHandledResetAt"] = token
        kind = flux.obj["kind"]
        if behaviour.revision is not None:
            if kind == "GitRepository":
                status["artifact"]["revision"] = behaviour.revision
            elif kind == "Kustomization":
                status["lastAttemptedRevision"] = behaviour.revision
                if behaviour.outcome == "ready":
                    status["lastAppliedRevision"] = behaviour.revision
            else:
                status["lastAttemptedRevision"] = behaviour.revision
        status["conditions"] = [c for c in status["conditions"] if c["type"] != "Reconciling"]
        revision = behaviour.revision or "the same revision"
        if behaviour.outcome == "ready":
            message = behaviour.message or f"Applied revision: {revision}"
            self.set_flux_ready(flux, True, "ReconciliationSucceeded", message)
        else:
            message = behaviour.message or "kustomize build failed"
            self.set_flux_ready(flux, False, "ReconciliationFailed", message)
        flux.pending = None

    # --- pods -------------------------------------------------------------------------------------

    def _list_pods(self, selector: str) -> dict[str, Any]:
        try:
            match = parse_selector(selector)
        except ValueError as exc:
            raise _Reply(
                _status(400, "BadRequest", f"unable to parse requirement: {exc}")
            ) from None
        items = [
            copy.deepcopy(pod.obj)
            for _, pod in sorted(self.pods.items())
            if match(pod.obj["metadata"]["labels"])
        ]
        return {
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": "1"},
            "items": items,
        }

    def _pod_log(self, name: str, query: dict[str, str]) -> web.Response:
        pod = self.pods.get(name)
        if pod is None:
            raise _Reply(
                _status(
                    404,
                    "NotFound",
                    f'pods "{name}" not found',
                    {"name": name, "kind": "pods"},
                )
            )
        containers = [c["name"] for c in pod.obj["spec"]["containers"]]
        container = query.get("container")
        if container is None:
            if len(containers) > 1:
                raise _Reply(
                    _status(
                        400,
                        "BadRequest",
                        f"a container name must be specified for pod {name}, "
                        f"choose one of: [{' '.join(containers)}]",
                    )
                )
            container = containers[0]
        if container not in containers:
            raise _Reply(
                _status(
                    400,
                    "BadRequest",
                    f"container {container} is not valid for pod {name}",
                )
            )
        lines = list(pod.logs.get(container, []))
        if "sinceSeconds" in query:
            since = self.clock() - timedelta(seconds=int(query["sinceSeconds"]))
            lines = [(at, line) for at, line in lines if at >= since]
        if "tailLines" in query:
            tail = int(query["tailLines"])
            lines = lines[-tail:] if tail > 0 else []
        text = "".join(line + "\n" for _, line in lines)
        return web.Response(text=text, content_type="text/plain")


# --- helpers --------------------------------------------------------------------------------------


class _Reply(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _ref(source: tuple[str, str, str | None]) -> dict[str, str]:
    kind, name, namespace = source
    ref = {"kind": kind, "name": name}
    if namespace:
        ref["namespace"] = namespace
    return ref


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(obj), status=status, content_type="application/json")


def _status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return _json(body, code)


def _unsupported_media(content_type: str | None, *, strategic: bool) -> web.Response:
    accepted = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ]
    if strategic:
        accepted.append("application/strategic-merge-patch+json")
    return _status(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format ({content_type}) - accepted media "
        f"types include: {', '.join(accepted)}",
    )


def _invalid(name: str, resource: str, why: str) -> web.Response:
    return _status(
        422,
        "Invalid",
        f'{resource} "{name}" is invalid: {why}',
        {"name": name, "kind": resource.split(".")[0]},
    )


_TERM = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # = != in notin exists !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op in ("=", "in"):
            return value in self.values
        return value not in self.values  # != and notin


def parse_selector(selector: str) -> Callable[[dict[str, str]], bool]:
    """A label selector (`a=b,c!=d,e,!f,g in (h,i)`) as a predicate; ValueError when invalid."""
    requirements: list[_Requirement] = []
    # Commas inside a set are not term separators.
    terms = re.split(r",(?![^(]*\))", selector) if selector.strip() else []
    for term in terms:
        m = _TERM.match(term)
        if not m:
            raise ValueError(term)
        key = m["key"]
        if m["op"] in ("=", "=="):
            requirements.append(_Requirement(key, "=", frozenset({m["value"]})))
        elif m["op"] == "!=":
            requirements.append(_Requirement(key, "!=", frozenset({m["value"]})))
        elif m["setop"]:
            values = frozenset(v.strip() for v in m["values"].split(","))
            requirements.append(_Requirement(key, m["setop"], values))
        else:
            requirements.append(_Requirement(key, "!exists" if m["neg"] else "exists"))
    return lambda labels: all(r.matches(labels) for r in requirements)
