"""`KubernetesClient`: one namespace of one cluster through the process's one `ApiClient` (and so
one connection pool), built by the composition root with `await KubernetesClient.create(...)`
and closed on the way out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from bot.integrations.kubernetes.config import load_configuration
from bot.integrations.kubernetes.errors import ClusterUnavailable, translate
from bot.integrations.kubernetes.flux import (
    FORCE_AT,
    REQUESTED_AT,
    RESET_AT,
    FluxObjectStatus,
    flux_kind,
    flux_status_from,
)
from bot.integrations.kubernetes.models import (
    RESTARTED_AT,
    DeploymentStatus,
    deployment_from,
    rfc3339,
)
from bot.integrations.kubernetes.pods import PodInfo, pod_from

# kubernetes-asyncio costs the process about 40 MB: it is imported where a client is built or
# used (the first admin command), not when the bot starts.
if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"

# One request never hangs longer than this; a rollout's own timeout is the caller's business.
REQUEST_TIMEOUT = 15.0

T = TypeVar("T")


class KubernetesClient:
    """One namespace of one cluster, through the process's one ApiClient.

    Each public method sends exactly one request, so a caller can count what an operation
    costs; it returns our own dataclasses and raises the domain errors of `errors`.
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
        return deployment_from(deployment)

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
        return deployment_from(deployment)

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
        return flux_status_from(api, obj)

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
        return flux_status_from(api, obj)

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
        return sorted((pod_from(pod, now) for pod in pods.items or []), key=lambda p: p.name)

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
