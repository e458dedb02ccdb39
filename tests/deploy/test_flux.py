"""deploy/flux: the GitOps layout, the Flux objects against their schemas, and the HelmRelease's
values against the chart itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.helpers import CHART, FLUX_DIR, REPO_ROOT, SCHEMAS, load_docs, render, run

SCHEMA_FILES = {
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): "gitrepository-source-v1.json",
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"): "helmrelease-helm-v2.json",
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): "kustomization-kustomize-v1.json",
}
CLUSTER_FILE = FLUX_DIR / "clusters" / "production" / "conductor-e.yaml"
APP_DIR = FLUX_DIR / "apps" / "conductor-e"


def _all_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(FLUX_DIR.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue  # kustomize's own config file, built below
        docs += load_docs(path.read_text())
    return docs


def _one(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in _all_docs() if d["kind"] == kind and "fluxcd" in d["apiVersion"]]
    return doc


def test_the_gitops_layout_is_there() -> None:
    assert CLUSTER_FILE.is_file()
    assert {p.name for p in APP_DIR.iterdir()} >= {
        "kustomization.yaml",
        "gitrepository.yaml",
        "helmrelease.yaml",
    }
    kinds = {(d["apiVersion"], d["kind"]) for d in _all_docs()}
    assert ("v1", "Namespace") in kinds
    assert set(SCHEMA_FILES) <= kinds


@pytest.mark.parametrize("key", list(SCHEMA_FILES))
def test_flux_objects_match_their_schemas(key: tuple[str, str]) -> None:
    schema = json.loads((SCHEMAS / SCHEMA_FILES[key]).read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    docs = [d for d in _all_docs() if (d["apiVersion"], d["kind"]) == key]
    assert docs
    for doc in docs:
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    ("key", "mutate"),
    [
        (("helm.toolkit.fluxcd.io/v2", "HelmRelease"), lambda d: d["spec"].update(intervall="5m")),
        (("helm.toolkit.fluxcd.io/v2", "HelmRelease"), lambda d: d["spec"].pop("interval")),
        (
            ("source.toolkit.fluxcd.io/v1", "GitRepository"),
            lambda d: d["spec"].update(url="github.com/x"),
        ),
        (
            ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
            lambda d: d["spec"].update(prune="yes"),
        ),
        (
            ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
            lambda d: d["spec"].update(interval="10 minutes"),
        ),
    ],
)
def test_the_flux_schemas_catch_mistakes(key: tuple[str, str], mutate: Any) -> None:
    schema = json.loads((SCHEMAS / SCHEMA_FILES[key]).read_text())
    (doc,) = [d for d in _all_docs() if (d["apiVersion"], d["kind"]) == key]
    mutate(doc)
    assert list(jsonschema.Draft7Validator(schema).iter_errors(doc))


def test_kustomize_builds_the_app(kubectl: Path) -> None:
    built = load_docs(run([kubectl, "kustomize", APP_DIR]).stdout)
    assert {(d["kind"], d["metadata"]["name"]) for d in built} == {
        ("GitRepository", "conductor-e"),
        ("HelmRelease", "conductor-e"),
    }
    assert all(d["metadata"]["namespace"] == "conductor-e" for d in built)


def test_the_references_line_up() -> None:
    namespace = next(d for d in _all_docs() if d["kind"] == "Namespace")["metadata"]["name"]
    entry = _one("Kustomization")
    git = _one("GitRepository")
    release = _one("HelmRelease")
    assert entry["metadata"]["namespace"] == namespace == "conductor-e"
    assert entry["spec"]["path"] == "./apps/conductor-e"
    assert entry["spec"]["prune"] is True
    chart = release["spec"]["chart"]["spec"]
    assert chart["sourceRef"]["kind"] == "GitRepository"
    assert chart["sourceRef"]["name"] == git["metadata"]["name"]
    assert (REPO_ROOT / chart["chart"]).joinpath("Chart.yaml").is_file()
    assert "!/helm/" in git["spec"]["ignore"]  # the chart survives the artifact's ignore rules
    assert release["spec"]["test"]["enable"] is True


def test_the_helmrelease_values_render_the_chart(helm: Path, tmp_path: Path) -> None:
    release = _one("HelmRelease")
    values = tmp_path / "helmrelease-values.yaml"
    values.write_text(yaml.safe_dump(release["spec"]["values"]))
    name = release["spec"]["releaseName"]
    docs = render(helm, [values])
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", f"{name}-bot") in names
    assert ("CronJob", f"{name}-coordinate") in names
    # Everything the bot may act on must be something the GitOps setup actually creates.
    created = {(d["kind"].lower(), d["metadata"]["name"]) for d in _all_docs()} | {
        ("deployment", n) for kind, n in names if kind == "Deployment"
    }
    for entry in release["spec"]["values"]["admin"]["fluxObjects"]:
        kind, _, obj = entry.partition("/")
        assert (kind, obj) in created, f"{entry} is allowlisted but not created by deploy/flux"
    for target in release["spec"]["values"]["admin"]["rolloutTargets"]:
        assert ("deployment", target) in created
    assert release["spec"]["values"]["existingSecret"] == "conductor-e-secrets"
    assert (CHART / "values.schema.json").is_file()
