"""docs/deployment.md: every command in it is right for this chart and these manifests.

Commands are read from the ```sh blocks. helm install/upgrade lines are run as `helm template`
with the same arguments; the secret command is run by the real kubectl with --dry-run=client;
every object, label, namespace, ServiceAccount and Flux object a command names must exist in
what the chart (with the Flux HelmRelease's values) and deploy/flux create.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import (
    CHART,
    FLUX_DIR,
    NAMESPACE,
    REPO_ROOT,
    documented_secret_keys,
    load_docs,
    pod_spec,
    render,
    run,
    workloads,
)

DOC = REPO_ROOT / "docs" / "deployment.md"
WORKLOAD_REFS = re.compile(r"\b(deployment|service|statefulset|cronjob|job)/([a-z0-9-]+)")


def _commands() -> list[str]:
    text = DOC.read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def _of(tool: str) -> list[list[str]]:
    return [shlex.split(c) for c in _commands() if c.startswith(f"{tool} ")]


@pytest.fixture(scope="module")
def flux_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(FLUX_DIR.rglob("*.yaml")):
        docs += load_docs(path.read_text())
    return docs


@pytest.fixture(scope="module")
def production(
    helm: Path, flux_docs: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    """The chart rendered with the HelmRelease's values: what production runs."""
    (release,) = [d for d in flux_docs if d["kind"] == "HelmRelease"]
    values = tmp_path_factory.mktemp("values") / "values.yaml"
    values.write_text(yaml.safe_dump(release["spec"]["values"]))
    return render(helm, [values])


def test_the_doc_has_commands_of_every_kind() -> None:
    assert len(_of("kubectl")) >= 15
    assert len(_of("helm")) >= 3
    assert len(_of("flux")) >= 6


def _flag(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
    return None


def test_kubectl_commands_name_what_the_chart_creates(production: list[dict[str, Any]]) -> None:
    existing = {(d["kind"].lower(), d["metadata"]["name"]) for d in production}
    created_by_doc = set()
    labels: list[dict[str, str]] = []
    for doc in workloads(production):
        template = doc if doc["kind"] == "Pod" else None
        if doc["kind"] == "CronJob":
            template = doc["spec"]["jobTemplate"]["spec"]["template"]
        elif doc["kind"] != "Pod":
            template = doc["spec"]["template"]
        labels.append(template["metadata"]["labels"])
        assert pod_spec(doc)
    service_account = next(
        d["metadata"]["name"] for d in production if d["kind"] == "ServiceAccount"
    )
    for args in _of("kubectl"):
        line = " ".join(args)
        if args[1:3] == ["create", "namespace"]:
            assert args[3] == NAMESPACE
            continue
        assert _flag(args, "-n", "--namespace") == NAMESPACE, line
        if args[3:5] == ["create", "job"]:
            created_by_doc.add(("job", args[-1]))
        for kind, name in WORKLOAD_REFS.findall(line):
            if "--from=" in line and f"--from={kind}/{name}" not in line and kind == "job":
                continue
            assert (kind, name) in existing | created_by_doc, f"{line}: no {kind}/{name}"
        selector = _flag(args, "-l")
        if selector:
            wanted = dict(pair.split("=", 1) for pair in selector.split(","))
            assert any(wanted.items() <= pod.items() for pod in labels), (
                f"{line}: no pod has {wanted}"
            )
        account = _flag(args, "--as")
        if account:
            assert account == f"system:serviceaccount:{NAMESPACE}:{service_account}", line
        if "secret" in args:
            assert "conductor-e-secrets" in args, line


def test_the_secret_command_works_and_uses_the_documented_keys(
    kubectl: Path, tmp_path: Path
) -> None:
    (create,) = [a for a in _of("kubectl") if a[3:6] == ["create", "secret", "generic"]]
    # No kubeconfig at all: a client-side dry run needs no cluster and must not look for one.
    offline = {"KUBECONFIG": str(tmp_path / "absent-kubeconfig")}
    args = [re.sub(r"\$\(?[A-Za-z_ -]+\)?|\"", "placeholder", a) for a in create]
    result = run([kubectl, *args[1:], "--dry-run=client", "-o", "yaml"], env=offline)
    secret = yaml.safe_load(result.stdout)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "conductor-e-secrets"
    keys = set(secret["data"])
    assert keys <= set(documented_secret_keys())
    assert keys == {
        "discord-bot-token",
        "anthropic-api-key",
        "github-token",
        "postgres-password",
        "discord-webhook-url",
    }


def test_helm_commands_render(helm: Path) -> None:
    lines = _of("helm")
    installs = [a for a in lines if a[1] in {"install", "upgrade"}]
    assert {a[1] for a in installs} == {"install", "upgrade"}
    for args in installs:
        assert args[2] == "conductor-e" and args[3] == "helm/conductor-e"
        assert _flag(args, "--namespace", "-n") == NAMESPACE
        rest = [a for a in args[4:] if a != "--reuse-values"]
        run([helm, "template", args[2], CHART, *rest])
    for args in lines:
        if args[1] == "test":
            assert args[2] == "conductor-e" and _flag(args, "--namespace", "-n") == NAMESPACE


FLUX_FORMS = [
    r"flux reconcile source git flux-system",
    r"flux reconcile (kustomization|helmrelease) (\S+) --namespace (\S+)( --with-source)?",
    r"flux get (kustomizations|helmreleases|sources git) --namespace (\S+)",
    r"flux (suspend|resume) helmrelease (\S+) --namespace (\S+)",
    r"flux logs --kind=(Kustomization|HelmRelease) --name=(\S+) --namespace=(\S+)",
]


def test_flux_commands_are_well_formed_and_name_real_objects(
    flux_docs: list[dict[str, Any]],
) -> None:
    objects = {
        (d["kind"].lower(), d["metadata"]["name"], d["metadata"].get("namespace"))
        for d in flux_docs
        if "fluxcd" in d["apiVersion"]
    }
    text = "\n".join(_commands())
    for line in [c for c in _commands() if c.startswith("flux ")] + re.findall(
        r"`(flux [^`]+)`", DOC.read_text()
    ):
        match = next(
            (re.fullmatch(form, line) for form in FLUX_FORMS if re.fullmatch(form, line)), None
        )
        assert match, f"unexpected flux command: {line}"
        groups = match.groups()
        if line.startswith(("flux reconcile kustomization", "flux reconcile helmrelease")):
            assert (groups[0], groups[1], groups[2]) in objects, line
        if line.startswith(("flux suspend", "flux resume")):
            assert ("helmrelease", groups[1], groups[2]) in objects, line
        if line.startswith("flux logs"):
            assert (groups[0].lower(), groups[1], groups[2]) in objects, line
        if line.startswith("flux get"):
            assert groups[-1] == NAMESPACE
    assert "flux reconcile helmrelease conductor-e" in text


def test_health_commands_match_the_chart(production: list[dict[str, Any]]) -> None:
    commands = _commands()
    (forward,) = [c for c in commands if "port-forward" in c]
    local, remote = forward.rsplit(" ", 1)[1].split(":")
    service = next(
        d
        for d in production
        if d["kind"] == "Service" and d["metadata"]["name"] == "conductor-e-api"
    )
    assert int(remote) == service["spec"]["ports"][0]["port"]
    paths = {
        re.search(r"http://127\.0\.0\.1:(\d+)(/\S*)", c).group(2)
        for c in commands
        if c.startswith("curl")
    }
    assert paths == {"/health", "/healthz/deep", "/metrics"}
    assert all(f"127.0.0.1:{local}/" in c for c in commands if c.startswith("curl"))
