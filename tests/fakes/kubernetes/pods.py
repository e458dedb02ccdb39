"""core/v1 pods: `GET /api/v1/namespaces/{ns}/pods` with a labelSelector (`a=b,c!=d,e,!f,
g in (h,i)`; an invalid one is 400), and `GET .../pods/{name}/log` with container (required
when the pod has several), tailLines and sinceSeconds. A test adds pods with `add_pod`, their
container statuses and their log lines."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes.kubernetes.server import (
    RecordedRequest,
    Reply,
    Server,
    error_status,
    json_response,
    now_rfc3339,
)


@dataclass
class FakePod:
    obj: dict[str, Any]
    logs: dict[str, list[tuple[datetime, str]]]  # container -> (time, line)


class Pods(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pods: dict[str, FakePod] = {}

    # --- test controls ----------------------------------------------------------------------

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

    # --- HTTP ---------------------------------------------------------------------------------

    def _route(self, method: str, parts: list[str], req: RecordedRequest) -> web.Response:
        # /api/v1/namespaces/{ns}/pods[/{name}/log]
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 5 and parts[4] == "pods":
            ns = parts[3]
            if len(parts) == 5 and method == "GET":
                self._check_rbac("list", "pods", "", None, ns)
                return json_response(self._list_pods(req.query.get("labelSelector", "")))
            if len(parts) == 7 and parts[6] == "log" and method == "GET":
                self._check_rbac("get", "pods/log", "", parts[5], ns)
                return self._pod_log(parts[5], req.query)
        return super()._route(method, parts, req)

    def _list_pods(self, selector: str) -> dict[str, Any]:
        try:
            match = parse_selector(selector)
        except ValueError as exc:
            raise Reply(
                error_status(400, "BadRequest", f"unable to parse requirement: {exc}")
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
            raise Reply(
                error_status(
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
                raise Reply(
                    error_status(
                        400,
                        "BadRequest",
                        f"a container name must be specified for pod {name}, "
                        f"choose one of: [{' '.join(containers)}]",
                    )
                )
            container = containers[0]
        if container not in containers:
            raise Reply(
                error_status(
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


# --- label selectors ------------------------------------------------------------------------------

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
