"""docker/compose.yml and its overrides, as Docker Compose resolves them (`docker compose config`):
what a platform team would otherwise find out only when `docker compose up` fails on their machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.docker.compose_files import (
    BASE,
    CPU,
    DOCKER,
    FILLED,
    S3,
    STACKS,
    example_env,
    resolve,
    run_compose,
)
from tests.helpers import REPO

RAY_NODES = {"gpu": ["ray-head", "ray-gpu-worker"], "cpu": ["ray-head", "ray-cpu-worker"]}
RAY_NODES |= {"s3": RAY_NODES["gpu"], "s3-cpu": RAY_NODES["cpu"]}
S3_KEYS = ["ANCHOR_OPT_S3_ENDPOINT_URL", "ANCHOR_OPT_S3_PATH_STYLE", "ANCHOR_OPT_S3_REGION",
           "ANCHOR_OPT_S3_ACCESS_KEY_ID", "ANCHOR_OPT_S3_SECRET_ACCESS_KEY"]  # fmt: skip
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|ROOT_USER")


class ComposeLoader(yaml.SafeLoader):
    """YAML as compose writes it: its merge tags (!override, !reset) read as plain values."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)


ComposeLoader.add_multi_constructor("!", _tagged)


def env_of(service: dict) -> dict:
    return service.get("environment") or {}


def devices(service: dict) -> list:
    reservations = ((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    return reservations.get("devices") or []


# --- the files resolve -----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_combination_resolves(stacks, stack):
    assert stacks[stack]["name"] == "anchor-opt"  # volumes are anchor-opt_*, wherever it is run from


def test_the_example_env_must_be_filled_in_first(compose_bin, tmp_path):
    """Copied as it is, docker/.env.example stops compose with a message naming what to fill in."""
    result = run_compose(compose_bin, [BASE], (DOCKER / ".env.example").read_text(), tmp_path, "config")
    assert result.returncode != 0
    named = re.search(r"required variable (\w+) is missing", result.stderr)
    assert named and named.group(1) in ("RAY_AUTH_TOKEN", "ANCHOR_OPT_S3_SECRET_ACCESS_KEY")
    assert "docker/.env" in result.stderr


def test_no_env_file_fails_fast_and_says_what_to_do(compose_bin, tmp_path):
    result = run_compose(compose_bin, [BASE], "", tmp_path, "config")
    assert result.returncode != 0
    assert "is missing a value" in result.stderr and "docker/.env.example" in result.stderr


def test_every_required_value_says_where_to_start():
    """Compose reports whichever missing variable it meets first (the order varies), so each one's
    message must point at the example file."""
    messages = re.findall(r"\$\{(\w+):\?([^}]*)\}", "".join((REPO / f).read_text() for f in (BASE, CPU, S3)))
    assert messages
    for name, message in messages:
        assert "docker/.env.example" in message, name


REQUIRED = ["RAY_AUTH_TOKEN", "ANCHOR_OPT_TOKENS", "ANCHOR_OPT_BUCKET", "ANCHOR_OPT_S3_ACCESS_KEY_ID",
            "ANCHOR_OPT_S3_SECRET_ACCESS_KEY"]  # fmt: skip


@pytest.mark.parametrize("blank", REQUIRED)
def test_each_required_value_is_named_when_missing(compose_bin, tmp_path, blank):
    result = run_compose(compose_bin, [BASE], example_env(**{blank: ""}), tmp_path, "config")
    assert result.returncode != 0
    assert f"required variable {blank} is missing a value" in result.stderr


def test_an_empty_minio_password_is_reported_through_the_key_that_repeats_it(compose_bin, tmp_path):
    result = run_compose(compose_bin, [BASE], example_env(MINIO_ROOT_PASSWORD=""), tmp_path, "config")
    assert result.returncode != 0
    assert "ANCHOR_OPT_S3_SECRET_ACCESS_KEY" in result.stderr and "MINIO_ROOT_PASSWORD" in result.stderr


def test_docker_dotenv_beside_compose_yml_is_read_from_the_repo_root(compose_bin, tmp_path):
    """The README runs `docker compose -f docker/compose.yml ...` from the repository root with the
    settings in docker/.env: compose must find that file by itself (no --env-file)."""
    project = tmp_path / "checkout"
    (project / "docker").mkdir(parents=True)
    for name in ("compose.yml", "compose.cpu.yml", "compose.s3.yml"):
        shutil.copy(DOCKER / name, project / "docker" / name)
    (project / "docker" / ".env").write_text(example_env(RAY_AUTH_TOKEN="from-docker-dotenv"))
    # As the README says, and also `cd docker && docker compose ...` (compose.yml is a default name).
    for cwd, files in ((project, [BASE, CPU]), (project / "docker", [])):
        result = run_compose(compose_bin, files, None, tmp_path, "config", "--format", "json", cwd=cwd)
        assert result.returncode == 0, result.stderr
        config = json.loads(result.stdout)
        assert env_of(config["services"]["api"])["RAY_AUTH_TOKEN"] == "from-docker-dotenv"
        assert config["services"]["api"]["build"]["context"] == str(project)  # `..` of docker/


# --- GPUs ------------------------------------------------------------------------------------------


def test_the_gpu_worker_reserves_every_nvidia_gpu(stacks):
    worker = stacks["gpu"]["services"]["ray-gpu-worker"]
    [device] = devices(worker)
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # all (-1): one Ray node with every GPU. `count: 1` would give each replica the first GPU.
    assert device["count"] == -1
    assert "--num-gpus=0" not in worker["command"]  # Ray counts the GPUs it is given


@pytest.mark.parametrize("stack", ["cpu", "s3-cpu"])
def test_the_cpu_override_asks_docker_for_no_gpu(stacks, stack):
    services = stacks[stack]["services"]
    assert "ray-gpu-worker" not in services
    assert not any(devices(s) for s in services.values())
    command = services["ray-cpu-worker"]["command"]
    assert "--num-cpus=4" in command and "--num-gpus=0" in command


def test_the_cpu_worker_is_the_gpu_worker_without_the_gpu(stacks):
    """compose.cpu.yml repeats the worker's settings (anchors do not cross files): they must not drift."""
    gpu = stacks["gpu"]["services"]["ray-gpu-worker"]
    cpu = stacks["cpu"]["services"]["ray-cpu-worker"]
    for key in ("image", "environment", "volumes", "ulimits", "init", "restart", "stop_grace_period",
                "shm_size", "healthcheck", "depends_on"):  # fmt: skip
        assert cpu.get(key) == gpu.get(key), key
    assert [a for a in cpu["command"] if not a.startswith("--num-")] == gpu["command"]


def test_cpu_worker_size_comes_from_env(compose_bin, tmp_path):
    config = resolve(compose_bin, [BASE, CPU], example_env(RAY_CPU_WORKER_CPUS="12"), tmp_path)
    assert "--num-cpus=12" in config["services"]["ray-cpu-worker"]["command"]


# --- start order and health ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_dependency_condition_can_be_met(stacks, stack):
    services = stacks[stack]["services"]
    for name, service in services.items():
        for dep, how in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} waits for {dep}, which is not started in {stack}"
            if how["condition"] == "service_healthy":
                test = (services[dep].get("healthcheck") or {}).get("test") or []
                assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} waits for {dep}, which has no check"
            elif how["condition"] == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} must be a one-shot job to complete"
            else:
                pytest.fail(f"{name} -> {dep}: condition {how['condition']!r} does not wait for readiness")


def test_start_order(stacks):
    api = stacks["gpu"]["services"]["api"]["depends_on"]
    assert api["ray-head"]["condition"] == "service_healthy"
    assert api["createbucket"]["condition"] == "service_completed_successfully"
    assert stacks["gpu"]["services"]["createbucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for stack, nodes in RAY_NODES.items():
        for worker in nodes[1:]:
            assert stacks[stack]["services"][worker]["depends_on"] == {
                "ray-head": {"condition": "service_healthy", "required": True}
            }


@pytest.mark.parametrize("stack", ["s3", "s3-cpu"])
def test_external_s3_starts_no_minio_and_waits_for_ray_alone(stacks, stack):
    services = stacks[stack]["services"]
    assert "minio" not in services and "createbucket" not in services
    assert list(services["api"]["depends_on"]) == ["ray-head"]


def test_aws_means_no_endpoint_and_no_minio_settings(compose_bin, tmp_path):
    """For AWS itself docker/.env has no endpoint (boto3 and pyarrow then use AWS's) and needs no
    MinIO password: deleted lines stay unset in every container, not set to an empty string."""
    env = example_env(ANCHOR_OPT_S3_ENDPOINT_URL=None, ANCHOR_OPT_S3_PATH_STYLE="false", MINIO_ROOT_USER=None,
                      MINIO_ROOT_PASSWORD=None, ANCHOR_OPT_S3_ACCESS_KEY_ID="AKIAEXAMPLE",
                      ANCHOR_OPT_S3_SECRET_ACCESS_KEY="aws-secret")  # fmt: skip
    services = resolve(compose_bin, [BASE, S3], env, tmp_path)["services"]
    for name in ("api", "ray-head", "ray-gpu-worker"):
        assert env_of(services[name]).get("ANCHOR_OPT_S3_ENDPOINT_URL") is None, name
        assert env_of(services[name])["ANCHOR_OPT_S3_SECRET_ACCESS_KEY"] == "aws-secret"


def test_health_checks_probe_endpoints_that_exist(stacks, tmp_path):
    from service.app import create_app
    from service.settings import ServiceSettings

    services = stacks["gpu"]["services"]
    routes = create_app(ServiceSettings(store_uri=str(tmp_path)), schedule=False).openapi()["paths"]
    api_probe = " ".join(services["api"]["healthcheck"]["test"])
    port = env_of(services["api"])["ANCHOR_OPT_PORT"]
    assert f"http://127.0.0.1:{port}/healthz" in api_probe and "/healthz" in routes

    head = services["ray-head"]
    assert "--dashboard-port=8265" in head["command"]
    head_probe = " ".join(head["healthcheck"]["test"])
    # Ray 2.60's dashboard and per-node dashboard agent (default port 52365) answer these without the token.
    assert "http://127.0.0.1:8265/api/gcs_healthz" in head_probe
    for name in ("ray-head", "ray-gpu-worker"):
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert "http://127.0.0.1:52365/api/local_raylet_healthz" in probe
    assert services["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]


def test_ray_nodes_stop_gracefully_and_have_room(stacks):
    for stack, nodes in RAY_NODES.items():
        for name in nodes:
            node = stacks[stack]["services"][name]
            assert node["init"] is True  # tini reaps Ray's orphaned processes
            assert node["restart"] == "unless-stopped"
            # Ray drains for up to 30 s on SIGTERM: compose must not SIGKILL it sooner.
            assert node["stop_grace_period"] == "40s"
            assert int(node["shm_size"]) >= 1 << 30  # Docker's 64 MB breaks PyTorch's data loaders
            assert node["ulimits"]["nofile"]["soft"] >= 65536


# --- wiring: the API, Ray and storage find one another ----------------------------------------------


def test_the_api_reaches_ray_head_and_minio_and_the_bucket_that_is_created(stacks):
    services = stacks["gpu"]["services"]
    api = env_of(services["api"])
    assert api["ANCHOR_OPT_RAY_ADDRESS"] == "http://ray-head:8265"
    head = services["ray-head"]["command"]
    assert "--head" in head and "--dashboard-host=0.0.0.0" in head and "--include-dashboard=true" in head

    assert api["ANCHOR_OPT_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert api["ANCHOR_OPT_S3_PATH_STYLE"] == "true"
    assert services["minio"]["command"][:2] == ["server", "/data"]  # S3 API on MinIO's default :9000

    bucket = env_of(services["createbucket"])["ANCHOR_OPT_BUCKET"]
    assert api["ANCHOR_OPT_STORE_URI"] == f"s3://{bucket}/store"
    script = services["createbucket"]["command"][0]
    assert "mc alias set anchor-opt http://minio:9000" in script
    # $$ in `config` output is a literal $: the shell expands it in the container, not compose.
    assert 'mc mb --ignore-existing "anchor-opt/$$ANCHOR_OPT_BUCKET"' in script
    assert json.loads(api["ANCHOR_OPT_ALLOWED_DATASET_ROOTS"]) == [f"s3://{bucket}/datasets"]


def test_the_api_environment_is_a_valid_service_configuration(stacks, monkeypatch):
    """What the container gets is what `anchor-opt serve` accepts: tokens well formed, and so the
    0.0.0.0 bind allowed."""
    from service.settings import load_settings

    for name in [n for n in os.environ if n.startswith("ANCHOR_OPT_")]:
        monkeypatch.delenv(name)
    for key, value in env_of(stacks["gpu"]["services"]["api"]).items():
        if value is not None:
            monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.host == "0.0.0.0" and settings.tokens and settings.ray_address == "http://ray-head:8265"
    assert settings.s3.path_style and settings.s3.endpoint_url == "http://minio:9000"


def test_the_example_token_is_a_placeholder_that_matches_no_token(stacks):
    [entry] = json.loads(env_of(stacks["gpu"]["services"]["api"])["ANCHOR_OPT_TOKENS"])
    assert entry["sha256"] == "0" * 64 and "REPLACE" in entry["name"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_process_that_touches_storage_or_ray_has_the_same_settings(stacks, stack):
    """The job driver (ray-head) and Ray Train's workers read the S3 settings and keys from their own
    environment (the API passes no keys to Ray jobs); every node needs Ray's token."""
    services = stacks[stack]["services"]
    api = env_of(services["api"])
    for name in RAY_NODES[stack]:
        node = env_of(services[name])
        assert {k: node.get(k) for k in S3_KEYS} == {k: api.get(k) for k in S3_KEYS}, name
        assert node["RAY_AUTH_MODE"] == "token" and node["RAY_AUTH_TOKEN"] == api["RAY_AUTH_TOKEN"], name
        assert node["RAY_AUTH_TOKEN"]


# --- data survives, nothing leaks -----------------------------------------------------------------------


def test_minio_data_and_the_dataset_cache_are_named_volumes(stacks):
    config = stacks["gpu"]
    [data] = config["services"]["minio"]["volumes"]
    assert data == {"type": "volume", "source": "minio-data", "target": "/data", "volume": {}}
    assert config["volumes"]["minio-data"] == {"name": "anchor-opt_minio-data"}  # not external, not anonymous
    for name in RAY_NODES["gpu"]:
        [cache] = config["services"][name]["volumes"]
        assert (cache["type"], cache["source"], cache["target"]) == (
            "volume", "dataset-cache", "/home/app/.cache/anchor-opt")  # fmt: skip


@pytest.mark.parametrize("path", [BASE, CPU, S3])
def test_no_secret_is_written_in_a_compose_file(path):
    """Every credential is `${VAR...}` from docker/.env, or passed through by name."""
    raw = yaml.load((REPO / path).read_text(), Loader=ComposeLoader)
    blocks = [s.get("environment") or {} for s in (raw.get("services") or {}).values()]
    blocks += [v for k, v in raw.items() if k.startswith("x-") and isinstance(v, dict)]
    checked = 0
    for block in blocks:
        for key, value in block.items():
            if SECRET_NAME.search(key) and key != "RAY_AUTH_MODE":
                checked += 1
                reference = re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", str(value))
                assert value is None or reference, (key, value)
    assert checked or path != BASE
    assert "minioadmin" not in (REPO / path).read_text()


@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_is_on_a_command_line(stacks, stack):
    """`ps` in a container and `docker inspect` show commands, entrypoints and health checks."""
    secrets = [v for k, v in FILLED.items() if SECRET_NAME.search(k)]
    for name, service in stacks[stack]["services"].items():
        argv = json.dumps([service.get(k) for k in ("command", "entrypoint", "healthcheck")])
        assert [s for s in secrets if s in argv] == [], name


def test_ray_jobs_are_given_no_secret(stacks, monkeypatch):
    """What the API puts in each Ray job's runtime environment, which Ray's Jobs API and dashboard
    show to whoever holds RAY_AUTH_TOKEN: the S3 endpoint and region, never the keys. (The Ray
    nodes hold the keys in their own environment, which Ray shows nowhere: docs/security.md.)"""
    from service.launcher import storage_env
    from service.settings import load_settings

    for name in [n for n in os.environ if n.startswith("ANCHOR_OPT_")]:
        monkeypatch.delenv(name)
    for key, value in env_of(stacks["gpu"]["services"]["api"]).items():
        if value is not None:
            monkeypatch.setenv(key, value)
    job_env = storage_env(load_settings().s3, secrets=False)
    assert job_env["ANCHOR_OPT_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert not [k for k in job_env if "KEY" in k] and FILLED["MINIO_ROOT_PASSWORD"] not in job_env.values()


def test_the_example_env_holds_no_secret():
    text = (DOCKER / ".env.example").read_text()
    lines = [line for line in text.splitlines() if "=" in line and not line.startswith("#")]
    values = dict(line.split("=", 1) for line in lines)
    assert values["MINIO_ROOT_PASSWORD"] == "" and values["RAY_AUTH_TOKEN"] == ""
    assert values["ANCHOR_OPT_S3_SECRET_ACCESS_KEY"] == "${MINIO_ROOT_PASSWORD}"


def test_git_ignores_the_real_env_file():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: cannot ask git what it ignores")
    check = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=REPO)
    assert check.returncode == 0, "git must ignore docker/.env (a line in .gitignore): it holds the secrets"


@pytest.mark.parametrize("stack", STACKS)
def test_ports_are_published_on_loopback_only(stacks, stack):
    published = [(name, p) for name, s in stacks[stack]["services"].items() for p in s.get("ports") or []]
    assert published
    for name, port in published:
        assert port["host_ip"] == "127.0.0.1", (name, port)


def test_the_api_can_be_published_wider_on_purpose(compose_bin, tmp_path):
    config = resolve(compose_bin, [BASE], example_env(ANCHOR_OPT_PUBLISH_HOST="0.0.0.0"), tmp_path)
    assert [p["host_ip"] for p in config["services"]["api"]["ports"]] == ["0.0.0.0"]
    assert {p["host_ip"] for p in config["services"]["minio"]["ports"]} == {"127.0.0.1"}


# --- images -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_images_are_pinned(stacks, stack):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for name, service in stacks[stack]["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, f"{name}: {image} is not pinned"
        if repository.startswith("anchor-opt-"):
            assert tag == version, f"{name}: {image} should carry the project's version {version}"
        else:
            assert re.fullmatch(r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", tag), image


def test_our_images_are_built_from_the_repository(stacks):
    services = stacks["gpu"]["services"]
    assert services["api"]["build"] == {"context": str(REPO), "dockerfile": "docker/api.Dockerfile"}
    assert services["ray-head"]["build"] == {"context": str(REPO), "dockerfile": "docker/trainer.Dockerfile"}
    # The worker runs the image ray-head builds (compose skips pulling an image a service builds).
    assert "build" not in services["ray-gpu-worker"]
    assert services["ray-gpu-worker"]["image"] == services["ray-head"]["image"]
    for service in (services["api"], services["ray-head"]):
        assert (Path(service["build"]["context"]) / service["build"]["dockerfile"]).is_file()
