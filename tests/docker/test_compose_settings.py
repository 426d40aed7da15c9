"""The service settings docker/.env hands to the API container: job limits, tenant limits, /metrics'
exposure and the caches, as Docker Compose resolves them and the service's own loader reads them.
Unset they keep the service's defaults; compose.cpu.yml's limits are what its CPU worker offers."""

from __future__ import annotations

import os
import re

import pytest

from service.capacity import check_capacity
from service.settings import JobLimits, ServiceSettings, load_settings
from tests.docker.compose_files import BASE, CPU, DOCKER, STACKS, example_env, resolve
from trainer.contract.spec import JobSpec

PASSED_ON = ["ANCHOR_OPT_LIMITS", "ANCHOR_OPT_TENANT_MAX_RUNNING_JOBS", "ANCHOR_OPT_TENANT_MAX_QUEUED_JOBS",
             "ANCHOR_OPT_TENANT_MAX_GPUS", "ANCHOR_OPT_METRICS_PUBLIC", "ANCHOR_OPT_METRICS_CACHE_S",
             "ANCHOR_OPT_RECORD_CACHE_BYTES", "ANCHOR_OPT_VIEW_CACHE_BYTES"]  # fmt: skip
CPU_WORKER = JobLimits(max_cpus_per_worker=4, max_gpus_per_worker=0, max_gpus_per_job=0)


def api_settings(config: dict) -> ServiceSettings:
    """What `anchor-opt serve` in the API container reads from the environment compose gives it."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("ANCHOR_OPT_")]:
            mp.delenv(name)
        for key, value in (config["services"]["api"].get("environment") or {}).items():
            if value is not None:
                mp.setenv(key, value)
        return load_settings()


@pytest.mark.parametrize("stack", ["gpu", "s3"])
def test_unset_the_gpu_stack_keeps_the_services_defaults(stacks, stack):
    env = stacks[stack]["services"]["api"]["environment"]
    assert {k: env[k] for k in PASSED_ON} == dict.fromkeys(PASSED_ON)  # listed, and left unset
    settings, defaults = api_settings(stacks[stack]), ServiceSettings.model_fields
    assert settings.limits == JobLimits()
    for field in ("tenant_max_running_jobs", "tenant_max_queued_jobs", "tenant_max_gpus", "metrics_cache_s"):
        assert getattr(settings, field) == defaults[field].default, field
    assert settings.metrics_public is False  # /metrics asks for a token


@pytest.mark.parametrize("stack", ["cpu", "s3-cpu"])
def test_the_cpu_stack_limits_jobs_to_the_cpu_worker(stacks, stack):
    settings = api_settings(stacks[stack])
    assert settings.limits == CPU_WORKER
    # A GPU job, or a worker wider than the CPU worker, is refused at submit rather than left waiting.
    for resources, field in [
        ({"gpus_per_worker": 1}, "max_gpus_per_worker"),
        ({"cpus_per_worker": 6}, "max_cpus_per_worker"),
    ]:
        with pytest.raises(ValueError, match=field):
            check_capacity(JobSpec.from_mapping({"resources": resources}, where="test"), settings)
    check_capacity(
        JobSpec.from_mapping({"resources": {"workers": 2, "cpus_per_worker": 2}}, where="t"), settings
    )


def test_the_cpu_limits_follow_the_cpu_workers_size(compose_bin, tmp_path):
    config = resolve(compose_bin, [BASE, CPU], example_env(RAY_CPU_WORKER_CPUS="12"), tmp_path)
    assert "--num-cpus=12" in config["services"]["ray-cpu-worker"]["command"]
    assert api_settings(config).limits.max_cpus_per_worker == 12


@pytest.mark.parametrize("stack", STACKS)
def test_docker_env_settings_reach_the_service(compose_bin, tmp_path, stack):
    limits = (
        '{"max_gpus_per_worker": 1, "max_gpus_per_job": 2, "max_cpus_per_worker": 8, "worker_memory_gb": 24}'
    )
    env = example_env(
        ANCHOR_OPT_LIMITS=f"'{limits}'", ANCHOR_OPT_TENANT_MAX_RUNNING_JOBS="1",
        ANCHOR_OPT_TENANT_MAX_QUEUED_JOBS="0", ANCHOR_OPT_TENANT_MAX_GPUS="1.5",
        ANCHOR_OPT_METRICS_PUBLIC="true", ANCHOR_OPT_METRICS_CACHE_S="0",
        ANCHOR_OPT_RECORD_CACHE_BYTES=str(1 << 20), ANCHOR_OPT_VIEW_CACHE_BYTES="0",
    )  # fmt: skip
    settings = api_settings(resolve(compose_bin, STACKS[stack], env, tmp_path))
    # docker/.env's limits replace compose.cpu.yml's whole.
    assert settings.limits == JobLimits(max_gpus_per_worker=1, max_gpus_per_job=2, max_cpus_per_worker=8,
                                        worker_memory_gb=24)  # fmt: skip
    assert (settings.tenant_max_running_jobs, settings.tenant_max_queued_jobs, settings.tenant_max_gpus) == (
        1,
        0,
        1.5,
    )
    assert settings.metrics_public is True and settings.metrics_cache_s == 0
    assert (settings.record_cache_bytes, settings.view_cache_bytes) == (1 << 20, 0)


def _commented_examples() -> list[tuple[str, str]]:
    lines = (DOCKER / ".env.example").read_text().splitlines()
    return [(m[1], m[2]) for line in lines if (m := re.fullmatch(r"# (ANCHOR_OPT_\w+)=(.*)", line))]


@pytest.mark.parametrize(("key", "value"), _commented_examples(), ids=[k for k, _ in _commented_examples()])
def test_each_commented_example_in_the_env_file_is_accepted(compose_bin, tmp_path, key, value):
    """Uncommented as it stands, each optional line of docker/.env.example is a setting the service takes."""
    stack = [BASE, CPU] if 'max_gpus_per_worker": 0' in value else [BASE]
    api_settings(resolve(compose_bin, stack, example_env(**{key: value}), tmp_path))


def test_the_commented_examples_cover_every_setting_passed_on():
    assert set(PASSED_ON) <= {key for key, _ in _commented_examples()}
