"""The service settings the chart exposes under `settings:` and in the token entries, as the API reads
them: ANCHOR_OPT_LIMITS derived from the worker group (so a job bigger than a pod is refused at submit
instead of waiting for one), the tenant, metrics and cache settings rendered only when set, and the
per-token limits and dataset roots passed through the Secret. Each is parsed by the service's own
ServiceSettings, so what the chart writes is what the service accepts."""

from __future__ import annotations

import json

import pytest
import yaml

from service.capacity import check_capacity
from service.settings import JobLimits, ServiceSettings, TokenEntry, load_settings
from tests.deploy.chart import (
    GPU_EXAMPLE,
    MINIMAL,
    HelmFailed,
    container_env,
    only,
    secrets_for,
    set_env,
)
from trainer.contract.spec import JobSpec

GiB = 1 << 30
# What the chart's default worker pod has: 1 GPU, 8 CPUs, 32Gi, and at most 4 of them.
DEFAULT_POD = dict(max_gpus_per_worker=1, max_gpus_per_job=4, max_cpus_per_worker=8, worker_memory_gb=32)
HASHES = ["a" * 64, "b" * 64, "c" * 64]


def api_settings(helm, *values, sets: tuple[str, ...] = ()) -> ServiceSettings:
    """The settings the API container would start with: the chart rendered, its environment resolved
    (ConfigMap and Secret), read by the service's own loader."""
    docs = helm.template(*values, sets=sets)
    container = only(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    with pytest.MonkeyPatch.context() as mp:
        set_env(mp, container_env(container, docs, secrets_for(docs)))
        return load_settings()


def values_file(tmp_path, values: dict):
    """A values file: floats and nulls as a person writes them (`--set` makes strings of floats)."""
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


# --- limits: what a worker pod has --------------------------------------------------------------------


def worker(**fields) -> dict:
    return {"ray": {"worker": fields}}


def pod(cpu, memory) -> dict:
    """A worker pod's resources with these limits (requests kept below them)."""
    limits = {"cpu": cpu, "memory": memory}
    return {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": limits}}


@pytest.mark.parametrize(
    ("values", "derived"),
    [
        ({}, {}),
        (worker(gpu=0), dict(max_gpus_per_worker=0, max_gpus_per_job=0)),
        (worker(gpu=2, maxReplicas=3), dict(max_gpus_per_worker=2, max_gpus_per_job=6)),
        (worker(gpu=16, maxReplicas=1000), dict(max_gpus_per_worker=16, max_gpus_per_job=4096)),
        (worker(**pod("7500m", "32768Mi")), dict(max_cpus_per_worker=7.5, worker_memory_gb=32)),
        (worker(**pod(12, "64G")), dict(max_cpus_per_worker=12, worker_memory_gb=64e9 / GiB)),
        (worker(**pod("2.5", 12 * GiB)), dict(max_cpus_per_worker=2.5, worker_memory_gb=12)),
        (worker(**pod("512", "1Ti")), dict(max_cpus_per_worker=256, worker_memory_gb=1024)),
        # Ray offers rayStartParams' counts where given, whatever the container's limits.
        (worker(gpu=2, rayStartParams={"num-cpus": "6", "num-gpus": "1"}),
         dict(max_cpus_per_worker=6, max_gpus_per_worker=1, max_gpus_per_job=4)),
    ],
    ids=["defaults", "cpu-group", "two-gpus", "capped", "milli-mebi", "decimal-g", "bytes", "big-pod",
         "start-params"],
)  # fmt: skip
def test_limits_are_what_a_worker_pod_has(helm, tmp_path, values, derived):
    # The rest (image size, epochs, workers, resource wait...) are the service's defaults.
    limits = api_settings(helm, MINIMAL, values_file(tmp_path, values)).limits
    assert limits == JobLimits(**DEFAULT_POD | derived)


def test_gpu_example_limits_match_its_a100_pods(helm):
    limits = api_settings(helm, GPU_EXAMPLE).limits
    assert limits == JobLimits(max_gpus_per_worker=1, max_gpus_per_job=8, max_cpus_per_worker=10,
                               worker_memory_gb=96, resource_wait_s=3600)  # fmt: skip


def test_settings_limits_win_over_the_derived_ones(helm, tmp_path):
    given = {"max_gpus_per_job": 2, "worker_memory_gb": 28.5, "max_cpus_per_worker": 4, "max_epochs": 300,
             "max_workers": 8, "resource_wait_s": 600}  # fmt: skip
    limits = api_settings(helm, MINIMAL, values_file(tmp_path, {"settings": {"limits": given}})).limits
    assert limits == JobLimits(max_gpus_per_worker=1, **given)


def test_a_null_limit_falls_back_to_the_derived_one(helm):
    limits = api_settings(helm, MINIMAL, sets=("settings.limits.worker_memory_gb=null",)).limits
    assert limits.worker_memory_gb == 32


def test_a_limit_the_chart_cannot_read_asks_for_it(helm):
    for item, message in [
        ("ray.worker.resources.limits.memory=null", 'ray.worker.resources.limits.memory "(none)"'),
        ("ray.worker.resources.limits.memory=32e9", "set settings.limits.worker_memory_gb"),
        ("ray.worker.resources.limits.cpu=null", "set settings.limits.max_cpus_per_worker"),
        ("ray.worker.resources.limits.cpu=500m", "needs at least one CPU"),
    ]:
        with pytest.raises(HelmFailed) as failed:
            helm.template(MINIMAL, sets=(item,))
        assert message in str(failed.value), item
    # Given in settings.limits, the pod's own limit is not needed.
    sets = ("ray.worker.resources.limits.memory=null", "settings.limits.worker_memory_gb=20")
    assert api_settings(helm, MINIMAL, sets=sets).limits.worker_memory_gb == 20


def test_a_job_beyond_a_pod_is_refused_at_submit(helm):
    """What the limits are for: on a named cluster the service checks a job only against them."""
    settings = api_settings(helm, MINIMAL, sets=("ray.worker.maxReplicas=2",))
    assert settings.ray_address
    fits = {"resources": {"workers": 2, "gpus_per_worker": 1, "cpus_per_worker": 8}}
    check_capacity(JobSpec.from_mapping(fits, where="test"), settings)
    for resources, field in [
        ({"workers": 1, "gpus_per_worker": 2}, "limits.max_gpus_per_worker"),
        ({"workers": 3, "gpus_per_worker": 1}, "limits.max_gpus_per_job"),
        ({"workers": 1, "cpus_per_worker": 9}, "limits.max_cpus_per_worker"),
    ]:
        with pytest.raises(ValueError, match=field):
            check_capacity(JobSpec.from_mapping({"resources": resources}, where="test"), settings)
    with pytest.raises(ValueError, match="limits.worker_memory_gb"):
        big = {"model": {"image_size": 1024}, "optim": {"batch_size": 256}}
        check_capacity(JobSpec.from_mapping(big, where="test"), settings)


# --- settings rendered only when set ------------------------------------------------------------------

OPTIONAL = {
    "tenantMaxRunningJobs": ("ANCHOR_OPT_TENANT_MAX_RUNNING_JOBS", "tenant_max_running_jobs", 3),
    "tenantMaxQueuedJobs": ("ANCHOR_OPT_TENANT_MAX_QUEUED_JOBS", "tenant_max_queued_jobs", 0),
    "tenantMaxGpus": ("ANCHOR_OPT_TENANT_MAX_GPUS", "tenant_max_gpus", 2.5),
    "metricsPublic": ("ANCHOR_OPT_METRICS_PUBLIC", "metrics_public", True),
    "metricsCacheS": ("ANCHOR_OPT_METRICS_CACHE_S", "metrics_cache_s", 0.5),
    "recordCacheBytes": ("ANCHOR_OPT_RECORD_CACHE_BYTES", "record_cache_bytes", 16 << 30),  # the largest
    "viewCacheBytes": ("ANCHOR_OPT_VIEW_CACHE_BYTES", "view_cache_bytes", 0),
}


def test_unset_settings_render_nothing_and_keep_the_services_defaults(helm):
    config = only(helm.template(MINIMAL), "ConfigMap")["data"]
    assert not [env for env, _, _ in OPTIONAL.values() if env in config]
    settings = api_settings(helm, MINIMAL)
    defaults = ServiceSettings.model_fields
    for _, field, _ in OPTIONAL.values():
        assert getattr(settings, field) == defaults[field].default, field


def test_set_settings_reach_the_service(helm, tmp_path):
    values = values_file(tmp_path, {"settings": {key: value for key, (_, _, value) in OPTIONAL.items()}})
    config = only(helm.template(MINIMAL, values), "ConfigMap")["data"]
    assert config["ANCHOR_OPT_RECORD_CACHE_BYTES"] == str(16 << 30)  # not 1.7179869184e+10
    settings = api_settings(helm, MINIMAL, values)
    for _, field, value in OPTIONAL.values():
        assert getattr(settings, field) == value, field


# --- token entries --------------------------------------------------------------------------------


def test_token_entries_carry_their_limits_and_roots_to_the_service(helm, tmp_path):
    tokens = [
        {"tenant": "vision", "sha256": HASHES[0], "name": "ci", "dataset_roots": ["s3://datasets/vision"],
         "max_running_jobs": 2, "max_queued_jobs": 0, "max_gpus": 1.5},
        {"tenant": "vision", "sha256": HASHES[1], "max_gpus": 1.5},  # the same tenant agrees
        {"tenant": "speech", "sha256": HASHES[2], "dataset_roots": [], "max_gpus": None},
    ]  # fmt: skip
    settings = api_settings(helm, values_file(tmp_path, {"store": {"bucket": "jobs"}, "tokens": tokens}))
    assert list(settings.tokens) == [TokenEntry(**t) for t in tokens]
    assert settings.tenant_limit("vision", "max_gpus") == 1.5
    assert settings.tenant_limit("vision", "max_queued_jobs") == 0
    assert settings.tenant_limit("speech", "max_gpus") is None  # the service's default: no limit


def test_two_values_of_one_tenants_limit_fail_the_render(helm):
    sets = (f"tokens[1].tenant=vision,tokens[1].sha256={HASHES[1]},tokens[1].max_running_jobs=3",
            "tokens[0].max_running_jobs=2")  # fmt: skip
    with pytest.raises(HelmFailed) as failed:
        helm.template(MINIMAL, sets=sets)
    assert 'tenant "vision" has two values of max_running_jobs (2 and 3)' in str(failed.value)


def test_the_limits_json_is_what_the_configmap_holds(helm):
    """ANCHOR_OPT_LIMITS is plain JSON of JobLimits' own keys (as in the service's settings file)."""
    raw = json.loads(only(helm.template(MINIMAL), "ConfigMap")["data"]["ANCHOR_OPT_LIMITS"])
    assert raw == DEFAULT_POD
