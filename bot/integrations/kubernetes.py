"""Kubernetes through kubernetes-asyncio: deployments, Flux objects, pods and their logs.

One `KubernetesClient` per process holds the one `ApiClient` (and so the one connection pool);
the composition root builds it with `await KubernetesClient.create(...)` and closes it on the way
out. Every public method sends exactly one request to the API server, so a caller can count the
requests an operation costs, and returns our own dataclasses, never kubernetes-asyncio models.

Failures become the domain errors below, with messages a person can act on: which verb on which
resource RBAC refused, what was not found, that the cluster could not be reached.

Patches are the ones the real tools send:

* `kubectl rollout restart`: a strategic merge patch setting the pod template annotation
  `kubectl.kubernetes.io/restartedAt` to the time in RFC 3339;
* `flux reconcile`: a JSON merge patch setting `reconcile.fluxcd.io/requestedAt` (and, for a
  HelmRelease, `reconcile.fluxcd.io/forceAt` / `resetAt` with the same token).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from bot.errors import Forbidden, NotFound, Unavailable, UpstreamError

# kubernetes-asyncio costs the process about 40 MB: it is imported where a client is built or
# used (the first admin command), not when the bot starts.
if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s
    from kubernetes_asyncio.client.exceptions import ApiException

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
FORCE_AT = "reconcile.fluxcd.io/forceAt"
RESET_AT = "reconcile.fluxcd.io/resetAt"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"

# One request never hangs longer than this; a rollout's own timeout is the caller's business.
REQUEST_TIMEOUT = 15.0

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

T = TypeVar("T")


# --- errors ---------------------------------------------------------------------------------------


class KubernetesForbidden(Forbidden):
    """The cluster's RBAC refused the request; the message names the verb and resource."""


class KubernetesNotFound(NotFound):
    """The object (or its API: Flux not installed) does not exist."""


class ClusterUnavailable(Unavailable):
    """The API server could not be reached, or no cluster is configured."""


class KubernetesError(UpstreamError):
    """The API server answered with an error that is neither 403 nor 404."""


# --- our own view of the objects ------------------------------------------------------------------


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


# --- configuration --------------------------------------------------------------------------------


def in_cluster(
    environ: Mapping[str, str] | None = None, service_account: Path | None = None
) -> bool:
    """True in a pod: the service host is in the environment and the token is mounted."""
    env = os.environ if environ is None else environ
    token = (service_account or SERVICE_ACCOUNT_DIR) / "token"
    return bool(env.get("KUBERNETES_SERVICE_HOST")) and token.is_file()


async def load_configuration(
    kubeconfig: Path | None = None,
    context: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    service_account: Path | None = None,
) -> k8s.Configuration:
    """The client configuration: an explicit kubeconfig first, then the pod's service account,
    then the default kubeconfig ($KUBECONFIG or ~/.kube/config).

    Raises ClusterUnavailable with the reason when none of them works.
    """
    from kubernetes_asyncio import client as k8s
    from kubernetes_asyncio import config as k8s_config
    from kubernetes_asyncio.config.config_exception import ConfigException

    configuration = k8s.Configuration()
    env = dict(os.environ if environ is None else environ)
    account = service_account or SERVICE_ACCOUNT_DIR
    try:
        if kubeconfig is None and in_cluster(env, account):
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration,
                token_filename=str(account / "token"),
                cert_filename=str(account / "ca.crt"),
                environ=env,
            )
        else:
            path = kubeconfig or _default_kubeconfig(env)
            if path is None or not path.is_file():
                where = f" at {path}" if path is not None else ""
                raise ClusterUnavailable(
                    f"Kubernetes is not configured: no kubeconfig{where} and not running in a pod"
                )
            await k8s_config.load_kube_config(
                config_file=str(path),
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except ConfigException as exc:
        raise ClusterUnavailable(f"Kubernetes configuration is unusable: {exc}") from None
    return configuration


def _default_kubeconfig(env: Mapping[str, str]) -> Path | None:
    """Like kubectl: the first existing file of $KUBECONFIG, else ~/.kube/config."""
    candidates = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    candidates.append(str(Path.home() / ".kube" / "config"))
    return next((Path(p) for p in candidates if Path(p).is_file()), None)


# --- errors from the API --------------------------------------------------------------------------

_CANNOT = re.compile(
    r'cannot (?P<verb>\w+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<namespace>[^"]+)")?'
)


def _status_body(exc: ApiException) -> dict[str, Any]:
    raw = exc.body
    body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except (TypeError, ValueError):
        return {"message": str(body)[:300]}
    return parsed if isinstance(parsed, dict) else {}


def _resource_name(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def translate(
    exc: ApiException, *, verb: str, resource: str, group: str, namespace: str, what: str
) -> Exception:
    """The domain error for an API error; `verb`/`resource`/`group` are what we asked, used
    when the Status body does not say."""
    status = _status_body(exc)
    message = str(status.get("message") or exc.reason or "")
    code = exc.status
    if code == 403:
        found = _CANNOT.search(message)
        if found:
            verb = found["verb"]
            resource = found["resource"]
            group = found["group"] if found["group"] is not None else group
            namespace = found["namespace"] or namespace
        return KubernetesForbidden(
            f"forbidden: cannot {verb} {_resource_name(resource, group)} in namespace {namespace}"
        )
    if code == 404:
        return KubernetesNotFound(f"{what} not found in namespace {namespace}")
    if code == 401:
        return KubernetesError("the Kubernetes API rejected Conductor-E's credentials (401)")
    if code == 0 or code is None:
        return ClusterUnavailable(f"cannot reach the Kubernetes API: {exc.reason}")
    if code in (502, 503, 504):
        return ClusterUnavailable(f"the Kubernetes API is unavailable ({code}): {message}")
    reason = status.get("reason") or exc.reason or "error"
    return KubernetesError(f"Kubernetes refused to {verb} {what}: {reason} ({code}): {message}")


# --- the client -----------------------------------------------------------------------------------


class KubernetesClient:
    """One namespace of one cluster, through the process's one ApiClient.

    Each public method sends one request and raises the domain errors of this module.
    """

    def __init__(
        self,
        api: k8s.ApiClient,
        namespace: str,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        from kubernetes_asyncio import client as k8s

        self.api = api
        self.namespace = namespace
        self.clock = clock
        self.request_timeout = request_timeout
        self.requests_sent = 0
        self._apps = k8s.AppsV1Api(api)
        self._core = k8s.CoreV1Api(api)
        self._custom = k8s.CustomObjectsApi(api)

    @classmethod
    async def create(
        cls,
        namespace: str,
        kubeconfig: Path | None = None,
        context: str | None = None,
        **kwargs: Any,
    ) -> KubernetesClient:
        """Load the configuration (see `load_configuration`) and open the one ApiClient."""
        from kubernetes_asyncio import client as k8s

        configuration = await load_configuration(kubeconfig, context)
        return cls(k8s.ApiClient(configuration), namespace, **kwargs)

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    async def close(self) -> None:
        await self.api.close()

    async def _send(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        verb: str,
        resource: str,
        group: str = "",
        what: str,
    ) -> T:
        from kubernetes_asyncio.client.exceptions import ApiException

        self.requests_sent += 1
        try:
            return await call()
        except ApiException as exc:
            raise translate(
                exc, verb=verb, resource=resource, group=group, namespace=self.namespace, what=what
            ) from None
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            raise ClusterUnavailable(
                f"cannot reach the Kubernetes API at {self.host}: {detail}"
            ) from None

    # --- deployments ------------------------------------------------------------------------------

    async def get_deployment(self, name: str) -> DeploymentStatus:
        deployment = await self._send(
            lambda: self._apps.read_namespaced_deployment(
                name, self.namespace, _request_timeout=self.request_timeout
            ),
            verb="get",
            resource="deployments",
            group="apps",
            what=f"deployment {name}",
        )
        return _deployment(deployment)

    async def restart_deployment(self, name: str, at: datetime | None = None) -> DeploymentStatus:
        """The patch `kubectl rollout restart` sends; returns the deployment after it, whose
        generation is the one the rollout must reach."""
        stamp = rfc3339(at or self.clock())
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        deployment = await self._send(
            # The stubs leave out the generated code's `_content_type`; without it the client
            # would pick the content type itself.
            lambda: self._apps.patch_namespaced_deployment(  # type: ignore[call-arg]
                name,
                self.namespace,
                body,
                _content_type=STRATEGIC_MERGE_PATCH,
                _request_timeout=self.request_timeout,
            ),
            verb="patch",
            resource="deployments",
            group="apps",
            what=f"deployment {name}",
        )
        return _deployment(deployment)

    # --- Flux -------------------------------------------------------------------------------------

    async def get_flux_object(
        self, kind: str, name: str, namespace: str | None = None
    ) -> FluxObjectStatus:
        api = flux_kind(kind)
        ns = namespace or self.namespace
        obj = await self._send(
            lambda: self._custom.get_namespaced_custom_object(
                api.group, api.version, ns, api.plural, name, _request_timeout=self.request_timeout
            ),
            verb="get",
            resource=api.plural,
            group=api.group,
            what=f"{api.kind} {name}",
        )
        return _flux_status(api, obj)

    async def request_reconcile(
        self,
        kind: str,
        name: str,
        token: str,
        *,
        namespace: str | None = None,
        force: bool = False,
        reset: bool = False,
    ) -> FluxObjectStatus:
        """The merge patch `flux reconcile` sends. `force`/`reset` only exist for a HelmRelease
        (helm-controller acts on them when they equal the requestedAt token)."""
        api = flux_kind(kind)
        ns = namespace or self.namespace
        annotations = {REQUESTED_AT: token}
        if (force or reset) and api.kind != "HelmRelease":
            raise ValueError("force and reset apply to a HelmRelease only")
        if force:
            annotations[FORCE_AT] = token
        if reset:
            annotations[RESET_AT] = token
        body = {"metadata": {"annotations": annotations}}
        obj = await self._send(
            # Custom resources take no strategic merge patch; say merge patch, as flux does.
            lambda: self._custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                api.group,
                api.version,
                ns,
                api.plural,
                name,
                body,
                _content_type=MERGE_PATCH,
                _request_timeout=self.request_timeout,
            ),
            verb="patch",
            resource=api.plural,
            group=api.group,
            what=f"{api.kind} {name}",
        )
        return _flux_status(api, obj)

    # --- pods -------------------------------------------------------------------------------------

    async def list_pods(self, selector: str) -> list[PodInfo]:
        pods = await self._send(
            lambda: self._core.list_namespaced_pod(
                self.namespace, label_selector=selector, _request_timeout=self.request_timeout
            ),
            verb="list",
            resource="pods",
            what=f"pods matching {selector}",
        )
        now = self.clock()
        return sorted((_pod(pod, now) for pod in pods.items or []), key=lambda p: p.name)

    async def pod_log(
        self,
        pod: str,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        since_seconds: int | None = None,
    ) -> list[str]:
        kwargs: dict[str, Any] = {"_request_timeout": self.request_timeout}
        if container:
            kwargs["container"] = container
        if tail_lines is not None:
            kwargs["tail_lines"] = tail_lines
        if since_seconds is not None:
            kwargs["since_seconds"] = since_seconds
        # Read raw: the generated client would json.loads a log that happens to be one JSON
        # line and hand back a dict's repr.
        kwargs["_preload_content"] = False

        async def read() -> str:
            from kubernetes_asyncio.client.exceptions import ApiException

            # With _preload_content=False this is the aiohttp response, whatever the stubs say.
            response: Any = await self._core.read_namespaced_pod_log(pod, self.namespace, **kwargs)
            try:
                body = await response.read()
            finally:
                response.release()
            if not 200 <= response.status < 300:
                error = ApiException(status=response.status, reason=response.reason)
                error.body = body.decode("utf-8", "replace")
                raise error
            # A container's log is bytes as written; UTF-8 is what our components write.
            return str(body.decode("utf-8", "replace"))

        text = await self._send(read, verb="get", resource="pods/log", what=f"the log of pod {pod}")
        return text.splitlines()


# --- conversions ----------------------------------------------------------------------------------


def rfc3339(at: datetime) -> str:
    """The RFC 3339 form kubectl writes (Go's time.RFC3339: seconds, offset or Z)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    text = at.replace(microsecond=0).isoformat()
    return text.replace("+00:00", "Z")


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


def _conditions(raw: Any) -> tuple[Condition, ...]:
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


def _deployment(deployment: k8s.V1Deployment) -> DeploymentStatus:
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
        conditions=_conditions(status.conditions),
    )


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


def _flux_status(api: FluxKind, obj: Mapping[str, Any]) -> FluxObjectStatus:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    conditions = _conditions(status.get("conditions"))
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


def _pod(pod: k8s.V1Pod, now: datetime) -> PodInfo:
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
