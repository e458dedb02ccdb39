"""Shared helpers for the deployment tests: find the tools, render the chart, read manifests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "conductor-e"
CI_VALUES = CHART / "ci"
FLUX_DIR = REPO_ROOT / "deploy" / "flux"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
RELEASE = "conductor-e"
NAMESPACE = "conductor-e"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one.
KUBE_VERSIONS = ("1.29.0", "1.35.0")
VALUES_FILES = {
    "default": None,
    "minimal": CI_VALUES / "minimal-values.yaml",
    "full": CI_VALUES / "full-values.yaml",
    "external-db": CI_VALUES / "external-db-values.yaml",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob", "Pod"}


class HelmError(Exception):
    """helm exited non-zero; the message is its stderr."""


def find_tool(name: str, env_var: str) -> Path | None:
    """`$ENV_VAR`, then `.tools/bin/<name>`, then PATH."""
    explicit = os.environ.get(env_var)
    if explicit:
        return Path(explicit)
    local = REPO_ROOT / ".tools" / "bin" / name
    if local.is_file():
        return local
    found = shutil.which(name)
    return Path(found) if found else None


def run(
    args: list[str | Path], *, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with a bounded time; never through a shell."""
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if check and result.returncode != 0:
        raise HelmError(f"{' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def template_args(
    helm: Path,
    values: Iterable[Path] = (),
    sets: dict[str, str] | None = None,
    *,
    kube_version: str = KUBE_VERSIONS[-1],
    extra: Iterable[str] = (),
) -> list[str | Path]:
    args: list[str | Path] = [
        helm,
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        kube_version,
        *extra,
    ]
    for path in values:
        args += ["--values", path]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def render_text(
    helm: Path, values: Iterable[Path] = (), sets: dict[str, str] | None = None, **kwargs: Any
) -> str:
    """The chart rendered by the real `helm template` (hooks and the test pod included)."""
    return run(template_args(helm, values, sets, **kwargs)).stdout


def load_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(
    helm: Path, values: Iterable[Path] = (), sets: dict[str, str] | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    return load_docs(render_text(helm, values, sets, **kwargs))


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(
        f"no {kind}/{name} in {[(d['kind'], d['metadata']['name']) for d in docs]}"
    )


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of any workload kind."""
    kind = doc["kind"]
    if kind == "Pod":
        return doc["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(doc)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]


def app_image(doc: dict[str, Any]) -> bool:
    """True for a workload that runs the Conductor-E image (not postgres)."""
    return all("postgres:" not in c["image"] for c in containers(doc))


def documented_secret_keys() -> dict[str, str]:
    """The Secret keys the chart README documents: key -> environment variable."""
    readme = (CHART / "README.md").read_text()
    section = readme.split("## Secret keys", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`([a-z0-9-]+)`\s*\|\s*`([A-Z0-9_]+)`\s*\|", section, re.M)
    return dict(rows)
