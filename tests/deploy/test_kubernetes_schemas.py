"""Every rendered object, and every plain Kubernetes object of deploy/flux, against the
Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields are errors)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from tests.deploy.helpers import FLUX_DIR, KUBE_VERSIONS, VALUES_FILES, load_docs, render

FLUX_GROUPS = ("toolkit.fluxcd.io/", "kustomize.config.k8s.io/")
# Custom resources the chart renders, checked against their own schemas (test_keda.py).
CRD_GROUPS = ("keda.sh/",)


def _validate(doc: dict, version: str) -> None:
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{where} is invalid for Kubernetes {version}: {path}: {exc.message}")


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_rendered_objects_match_the_kubernetes_schemas(helm: Path, name: str, version: str) -> None:
    path = VALUES_FILES[name]
    docs = render(helm, [path] if path else [], kube_version=version)
    assert len(docs) >= 10
    for doc in docs:
        if not doc["apiVersion"].startswith(CRD_GROUPS):
            _validate(doc, version)


def test_an_invalid_object_is_caught() -> None:
    # The validator itself must be able to fail, or the test above proves nothing.
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {}, "bogus": 1},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_plain_kubernetes_objects_in_deploy_flux(version: str) -> None:
    checked = 0
    for path in sorted(FLUX_DIR.rglob("*.yaml")):
        for doc in load_docs(path.read_text()):
            if any(group in doc["apiVersion"] for group in FLUX_GROUPS):
                continue  # Flux objects: test_flux.py
            _validate(doc, version)
            checked += 1
    assert checked >= 1  # the Namespace
