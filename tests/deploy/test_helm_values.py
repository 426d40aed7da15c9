"""What the chart refuses, and how it says so: values.schema.json for wrong types and ranges, the
templates' `fail` for what a schema cannot express. Then the optional parts (an existing Secret, the
in-chart MinIO) and the NOTES a user reads after `helm install`."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from service.capacity import check_capacity
from service.settings import ServiceSettings
from tests.deploy.chart import CHART, GPU_EXAMPLE, MINIMAL, HelmFailed, only, pod_specs
from trainer.contract.spec import JobSpec

HASH = "ab" * 32
MINIMAL_HASH = yaml.safe_load(MINIMAL.read_text())["tokens"][0]["sha256"]


@pytest.mark.parametrize(
    ("item", "named"),
    [
        ("replicaCount=two", "/replicaCount"),
        ("ray.worker.gpu=-1", "/ray/worker/gpu"),
        ("ray.worker.maxReplicas=many", "/ray/worker/maxReplicas"),
        ("tokens[0].tenant=vision,tokens[0].sha256=not-64-hex", "/tokens/0/sha256"),
        (f"tokens[0].tenant=has space,tokens[0].sha256={HASH}", "/tokens/0/tenant"),
        ("replicas=2", "'replicas'"),  # an unknown top-level key (a typo of replicaCount)
        ("ray.worker.gpus=2", "'gpus'"),
        ("s3.pathStyle=maybe", "/s3/pathStyle"),
        ("s3.endpointUrl=minio:9000", "/s3/endpointUrl"),
        ("store.bucket=My_Bucket", "/store/bucket"),
        ("settings.allowedSchemes[0]=http", "/settings/allowedSchemes/0"),
        ("settings.allowedDatasetRoots[0]=datasets/voc", "/settings/allowedDatasetRoots/0"),
        ("ray.worker.shmSize=lots", "/ray/worker/shmSize"),
        ("ray.autoscaler.upscalingMode=Fast", "/ray/autoscaler/upscalingMode"),
        ("ray.head.rayStartParams.dashboard-host=127.0.0.1", "/ray/head/rayStartParams/dashboard-host"),
        ("ray.worker.rayStartParams.dashboard-agent-listen-port=1", "dashboard-agent-listen-port"),
        ("ray.probes.liveness.periodSeconds=0", "/ray/probes/liveness/periodSeconds"),
        ("ray.auth.existingSecret=Ray_Token", "/ray/auth/existingSecret"),
        ("ray.auth.mode=disabled", "'mode'"),  # Ray's token authentication cannot be turned off
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("port=70000", "/port"),
        ("settings.metricsPublic=maybe", "/settings/metricsPublic"),
        ("settings.tenantMaxRunningJobs=0", "/settings/tenantMaxRunningJobs"),
        ("settings.tenantMaxQueuedJobs=-1", "/settings/tenantMaxQueuedJobs"),
        ("settings.tenantMaxGpus=lots", "/settings/tenantMaxGpus"),
        ("settings.metricsCacheS=3601", "/settings/metricsCacheS"),
        ("settings.recordCacheBytes=big", "/settings/recordCacheBytes"),
        ("settings.limits.max_workers=many", "/settings/limits/max_workers"),
        ("settings.limits.max_gpus_per_worker=17", "/settings/limits/max_gpus_per_worker"),
        ("settings.limits.worker_memory_gb=0", "/settings/limits/worker_memory_gb"),
        ("settings.limits.embedded_gpus=1", "'embedded_gpus'"),  # the embedded head's: no such head here
        ("settings.limits.max_epoch=10", "'max_epoch'"),
        ("tokens[0].max_running_jobs=0", "/tokens/0/max_running_jobs"),
        ("tokens[0].max_queued_jobs=some", "/tokens/0/max_queued_jobs"),
        ("tokens[0].max_gpus=-1", "/tokens/0/max_gpus"),
        ("tokens[0].dataset_roots[0]=datasets/voc", "/tokens/0/dataset_roots/0"),
        ("tokens[0].max_jobs=1", "'max_jobs'"),
    ],
)
def test_schema_rejects_a_bad_value_naming_it(helm, item, named):
    with pytest.raises(HelmFailed) as failed:
        helm.template(MINIMAL, sets=(item,))
    assert named in str(failed.value)


@pytest.mark.parametrize(
    ("base", "sets", "message"),
    [
        ((), ("store.bucket=jobs",), "tokens: at least one API token hash is required"),
        ((), (f"tokens[0].tenant=vision,tokens[0].sha256={HASH}",), "store.bucket is required"),
        ((MINIMAL,), ("existingSecret=mine",), "tokens and existingSecret are both set"),
        ((MINIMAL,), ("existingSecret=mine", "tokens=null", "s3.accessKeyId=k"), "Key and existingSecret"),
        ((MINIMAL,), (f"tokens[1].tenant=other,tokens[1].sha256={MINIMAL_HASH}",), "sha256 is listed twice"),
        ((MINIMAL,), ("s3.accessKeyId=key",), "set both, or neither"),
        ((MINIMAL,), ("minio.enabled=true",), "minio.enabled: set s3.accessKeyId"),
        ((MINIMAL,), ("ray.worker.minReplicas=3", "ray.worker.maxReplicas=2"), "minReplicas (3) is larger"),
    ],
    ids=["no-token", "no-bucket", "tokens-and-existing", "keys-and-existing", "duplicate-token", "one-key",
         "minio-no-keys", "min-over-max"],
)  # fmt: skip
def test_template_fails_with_a_message_saying_what_to_set(helm, base, sets, message):
    with pytest.raises(HelmFailed) as failed:
        helm.template(*base, sets=sets)
    assert message in str(failed.value)


def test_defaults_alone_fail_asking_for_the_bucket_and_token(helm):
    with pytest.raises(HelmFailed) as failed:
        helm.template()
    assert "store.bucket is required" in str(failed.value)


def test_a_long_release_name_with_digits_first_asks_for_a_cluster_name(helm):
    with pytest.raises(HelmFailed) as failed:
        helm.template(MINIMAL, release="2024-trial")
    assert "set ray.clusterName" in str(failed.value)
    docs = helm.template(MINIMAL, release="2024-trial", sets=("ray.clusterName=trial-ray",))
    assert only(docs, "ConfigMap")["data"]["ANCHOR_OPT_RAY_ADDRESS"] == "http://trial-ray-head-svc:8265"


def test_existing_secret_mode_renders_no_secret_and_reads_the_named_one(helm):
    docs = helm.template(GPU_EXAMPLE)
    assert not [d for d in docs if d["kind"] == "Secret"]
    refs = [
        var["valueFrom"]["secretKeyRef"]
        for spec in pod_specs(docs).values()
        for container in spec["containers"]
        for var in container.get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    ]
    assert refs and {r["name"] for r in refs} == {"anchor-opt-secrets"}
    # Tokens and Ray's token are required (neither the API nor Ray starts without them); S3 keys are
    # optional (IAM role).
    required = {r["key"] for r in refs if not r.get("optional")}
    assert required == {"ANCHOR_OPT_TOKENS", "auth_token"}


def test_minio_option_adds_a_server_a_volume_and_a_bucket_job(helm):
    docs = helm.template(
        MINIMAL, sets=("minio.enabled=true", "s3.accessKeyId=anchor", "s3.secretAccessKey=minio-password")
    )
    server = only(docs, "Deployment", "minio")
    service = only(docs, "Service", "minio")
    claim = only(docs, "PersistentVolumeClaim", "minio")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # data outlives uninstall
    volumes = server["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in volumes
    config = only(docs, "ConfigMap")["data"]
    assert config["ANCHOR_OPT_S3_ENDPOINT_URL"] == f"http://{service['metadata']['name']}:9000"
    assert config["ANCHOR_OPT_S3_PATH_STYLE"] == "true"
    job = only(docs, "Job", "minio-bucket")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    env = {v["name"]: v.get("value") for v in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BUCKET"] == "anchor-opt-jobs" and env["ENDPOINT"] == config["ANCHOR_OPT_S3_ENDPOINT_URL"]


def test_minio_is_off_by_default(helm):
    docs = helm.template(MINIMAL)
    assert not [d for d in docs if "minio" in d["metadata"]["name"]]
    assert "ANCHOR_OPT_S3_ENDPOINT_URL" not in only(docs, "ConfigMap")["data"]  # AWS itself


def _notes(helm, *sets: str) -> str:
    """NOTES.txt as `helm install` prints it (a client-side dry run: no cluster)."""
    args = ["install", "demo", str(CHART), "-f", str(MINIMAL), "--namespace", "team", "--dry-run=client"]
    args += [a for s in sets for a in ("--set", s)]
    done = helm.run(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("NOTES:", 1)[1]


@pytest.mark.parametrize("gpus", [1, 0])
def test_notes_give_the_first_curl_and_a_job_the_service_accepts(helm, gpus):
    notes = _notes(helm, f"ray.worker.gpu={gpus}")
    assert "kubectl -n team port-forward svc/demo-anchor-opt 8000:8000" in notes
    assert 'curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/jobs' in notes
    body = json.loads(re.search(r"-d '(\{.*\})'", notes).group(1))
    spec = JobSpec.from_mapping(body, where="NOTES.txt")
    assert spec.resources.gpus_per_worker == gpus
    # Within the limits the chart derives from its worker pods, which the NOTES also state.
    config = only(helm.template(MINIMAL, sets=(f"ray.worker.gpu={gpus}",)), "ConfigMap")["data"]
    limits = json.loads(config["ANCHOR_OPT_LIMITS"])
    check_capacity(spec, ServiceSettings(ray_address="http://head:8265", limits=limits, store_uri="s3://b/p"))
    stated = (
        f"more than {gpus} GPU(s), 8 CPUs or\n   32 GiB of memory per worker, or {4 * gpus} GPU(s) in all"
    )
    assert stated in notes


def test_notes_say_where_rays_token_is(helm):
    notes = _notes(helm)
    assert "kubectl -n team get secret demo-anchor-opt-ray -o jsonpath='{.data.auth_token}'" in notes
    assert "port-forward svc/demo-anchor-opt-ray-head-svc 8265:8265" in notes


def test_notes_point_at_the_ingress_when_there_is_one(helm):
    notes = _notes(helm, "ingress.enabled=true", "ingress.hosts[0].host=api.example.org",
                   "ingress.hosts[0].paths[0].path=/", "ingress.hosts[0].paths[0].pathType=Prefix",
                   "ingress.tls[0].secretName=tls", "ingress.tls[0].hosts[0]=api.example.org")  # fmt: skip
    assert "export API=https://api.example.org" in notes
