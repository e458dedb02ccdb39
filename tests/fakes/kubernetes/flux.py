"""The Flux custom resources (Kustomization v1, HelmRelease v2, GitRepository v1): get, list,
and the merge patch `flux reconcile` sends (metadata.annotations[reconcile.fluxcd.io/
requestedAt], and for a HelmRelease forceAt / resetAt, RFC 3339; a strategic merge patch is
415, as for any custom resource, another shape 422). A reconcile request is handled after a
number of GETs the test chooses (`Reconcile`), setting status.lastHandledReconcileAt and the
Ready condition; `reconcile_requests` keeps every request."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from tests.fakes.kubernetes.server import (
    PATCH_TYPES,
    RFC3339,
    RecordedRequest,
    Reply,
    Server,
    error_status,
    invalid,
    json_response,
    now_rfc3339,
    unsupported_media,
)

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
FORCE_AT = "reconcile.fluxcd.io/forceAt"
RESET_AT = "reconcile.fluxcd.io/resetAt"

FLUX = {
    ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations"): "Kustomization",
    ("helm.toolkit.fluxcd.io", "v2", "helmreleases"): "HelmRelease",
    ("source.toolkit.fluxcd.io", "v1", "gitrepositories"): "GitRepository",
}
FLUX_API = {kind: key for key, kind in FLUX.items()}


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


def _ref(source: tuple[str, str, str | None]) -> dict[str, str]:
    kind, name, namespace = source
    ref = {"kind": kind, "name": name}
    if namespace:
        ref["namespace"] = namespace
    return ref


class Flux(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flux: dict[tuple[str, str], FakeFluxObject] = {}  # (kind, name)
        self.reconcile_requests: list[tuple[str, str, dict[str, str]]] = []

    # --- test controls ----------------------------------------------------------------------

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

    # --- HTTP ---------------------------------------------------------------------------------

    def _route(self, method: str, parts: list[str], req: RecordedRequest) -> web.Response:
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
                    return json_response(
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
                        return json_response(self._get_flux(kind, name, ns))
                    if method == "PATCH":
                        self._check_rbac("patch", plural, group, name, ns)
                        return json_response(self._patch_flux(kind, name, ns, req))
        return super()._route(method, parts, req)

    def _find_flux(self, kind: str, name: str, namespace: str) -> FakeFluxObject:
        flux = self.flux.get((kind, name))
        if flux is None or flux.obj["metadata"]["namespace"] != namespace:
            group, _, plural = FLUX_API[kind]
            raise Reply(
                error_status(
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
            raise Reply(unsupported_media(req.content_type, strategic=False))
        if req.content_type != "application/merge-patch+json":
            raise Reply(invalid(name, resource, "the fake accepts flux's merge patch"))
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
            raise Reply(
                invalid(
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

    # --- the controller -----------------------------------------------------------------------

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
