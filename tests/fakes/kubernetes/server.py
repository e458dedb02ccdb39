"""What every request to the fake Kubernetes API server goes through, whatever its resource.

Requests need `Authorization: Bearer <token>` (401 otherwise). `outage(n)` answers the next
requests 503 as an API server restarting does; `forbid()` makes chosen requests 403 with the
Status body RBAC returns (the service account's Role is namespaced: anything in another
namespace is refused too). An unknown path is 404 with a NotFound Status. Every request is
recorded in `requests` (and handed to `on_request`, when set) for assertions.

Each resource module answers its paths in `_route` and passes the others on.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from aiohttp import web

from tests.fakes import serve

PATCH_TYPES = {
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def now_rfc3339(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any
    authorization: str | None
    at: float = field(default=0.0)  # time.monotonic()


class Server:
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

    async def __aenter__(self) -> Self:
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

    # --- test controls: errors and assertions -----------------------------------------------

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
            return error_status(
                503, "ServiceUnavailable", "the server is currently unable to handle the request"
            )
        if recorded.authorization != f"Bearer {self.token}":
            return error_status(401, "Unauthorized", "Unauthorized")
        parts = [p for p in request.path.split("/") if p]
        try:
            return self._route(request.method, parts, recorded)
        except Reply as reply:
            return reply.response

    def _route(self, method: str, parts: list[str], req: RecordedRequest) -> web.Response:
        """Each resource module answers its own paths and passes the others on to here."""
        return error_status(404, "NotFound", "the server could not find the requested resource")

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
            raise Reply(error_status(403, "Forbidden", message, details))


# --- answers --------------------------------------------------------------------------------------


class Reply(Exception):
    """Raised anywhere while answering a request: this response is the answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(obj), status=status, content_type="application/json")


def error_status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> web.Response:
    """A Status object, as the API server answers an error."""
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
    return json_response(body, code)


def unsupported_media(content_type: str | None, *, strategic: bool) -> web.Response:
    accepted = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ]
    if strategic:
        accepted.append("application/strategic-merge-patch+json")
    return error_status(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format ({content_type}) - accepted media "
        f"types include: {', '.join(accepted)}",
    )


def invalid(name: str, resource: str, why: str) -> web.Response:
    return error_status(
        422,
        "Invalid",
        f'{resource} "{name}" is invalid: {why}',
        {"name": name, "kind": resource.split(".")[0]},
    )
