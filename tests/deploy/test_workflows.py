"""The GitHub Actions workflow: valid against the published workflow schema, tests on pull
requests, the image pushed from main with the SHA and `latest` to a registry from variables."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import REPO_ROOT

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    assert WORKFLOWS, "no workflow in .github/workflows"
    return _load(REPO_ROOT / ".github" / "workflows" / "ci.yaml")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_match_the_github_workflow_schema(path: Path) -> None:
    if shutil.which("check-jsonschema") is None and not _has_module("check_jsonschema"):
        pytest.skip("check-jsonschema is not installed (it ships the workflow schema)")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _steps(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("uses", "")) for step in job["steps"])


def test_tests_run_on_pull_requests_and_pushes(ci: dict[str, Any]) -> None:
    assert "pull_request" in ci["on"]
    assert ci["on"]["push"]["branches"] == ["main"]
    steps = _steps(ci["jobs"]["test"])
    # The README's test command, which CI's .ci/run calls too.
    assert "make test" in steps
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
    assert ci["permissions"] == {"contents": "read"}


def test_the_image_is_pushed_from_main_only_after_the_tests(ci: dict[str, Any]) -> None:
    image = ci["jobs"]["image"]
    assert image["needs"] == "test"
    assert "github.event_name == 'push'" in image["if"]
    assert "refs/heads/main" in image["if"]
    (build,) = [
        s for s in image["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action")
    ]
    assert build["with"]["push"] is True
    tags = [t.strip() for t in build["with"]["tags"].splitlines() if t.strip()]
    assert tags == [
        "${{ vars.REGISTRY }}/${{ vars.IMAGE_NAME }}:${{ github.sha }}",
        "${{ vars.REGISTRY }}/${{ vars.IMAGE_NAME }}:latest",
    ]
    (login,) = [
        s for s in image["steps"] if str(s.get("uses", "")).startswith("docker/login-action")
    ]
    assert login["with"]["registry"] == "${{ vars.REGISTRY }}"
    assert image["permissions"]["packages"] == "write"


def test_actions_are_pinned_to_a_version(ci: dict[str, Any]) -> None:
    for job in ci["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert "@" in step["uses"] and not step["uses"].endswith(("@main", "@master"))
