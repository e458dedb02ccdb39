"""The domain errors of the Kubernetes API's answers, with messages a person can act on: which
verb on which resource RBAC refused, what was not found, that the cluster could not be reached.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from bot.errors import Forbidden, NotFound, Unavailable, UpstreamError

if TYPE_CHECKING:
    from kubernetes_asyncio.client.exceptions import ApiException


class KubernetesForbidden(Forbidden):
    """The cluster's RBAC refused the request; the message names the verb and resource."""


class KubernetesNotFound(NotFound):
    """The object (or its API: Flux not installed) does not exist."""


class ClusterUnavailable(Unavailable):
    """The API server could not be reached, or no cluster is configured."""


class KubernetesError(UpstreamError):
    """The API server answered with an error that is neither 403 nor 404."""


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
