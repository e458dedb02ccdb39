"""Where the client's configuration comes from: a kubeconfig, or the pod's service account."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bot.integrations.kubernetes.errors import ClusterUnavailable

if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


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
