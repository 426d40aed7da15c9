"""The RayCluster the chart renders, as KubeRay will read it: GPU limits and scheduling of the worker
group, the head Service name the API is given, only fields of KubeRay's ray.io/v1 API, the same
S3 settings as the API's on every Ray pod, and Ray's token authentication with the API holding the
token."""

from __future__ import annotations

import base64
import re
import tomllib

import pytest

from service.launcher import auth_token
from tests.deploy.chart import (
    CHART,
    EXISTING_RAY_TOKEN,
    GPU_EXAMPLE,
    MINIMAL,
    MINIO,
    REPO,
    S3_KEYS,
    container_env,
    decoded,
    only,
    pod_specs,
    ray_token_secret,
    secrets_for,
    set_env,
)
from tests.deploy.kube_api import kube_api
from trainer.contract.storage import StorageSettings


def _worker(docs: list[dict]) -> dict:
    (group,) = only(docs, "RayCluster")["spec"]["workerGroupSpecs"]
    return group


@pytest.mark.parametrize("gpus", [1, 2])
def test_gpu_limit_reaches_the_worker_container(helm, gpus):
    docs = helm.template(MINIMAL, sets=(f"ray.worker.gpu={gpus}",))
    worker = _worker(docs)["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert worker["resources"]["limits"]["cpu"] == "8"  # the other limits are kept
    head = only(docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {})


def test_zero_gpus_makes_a_cpu_worker_group(helm):
    worker = _worker(helm.template(MINIMAL, sets=("ray.worker.gpu=0",)))["template"]["spec"]["containers"][0]
    assert not any(key.endswith("/gpu") for key in worker["resources"]["limits"])


def test_gpu_example_schedules_workers_on_a100_nodes_with_shared_memory(helm):
    group = _worker(helm.template(GPU_EXAMPLE))
    assert (group["minReplicas"], group["maxReplicas"], group["replicas"]) == (0, 8, 0)
    spec = group["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    shm = next(v for v in spec["volumes"] if v["name"] == "shared-mem")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/dev/shm"] == "shared-mem"


def test_worker_scheduling_comes_from_values(helm):
    sets = (
        "ray.worker.nodeSelector.pool=gpu",
        "ray.worker.tolerations[0].key=dedicated,ray.worker.tolerations[0].operator=Exists",
        "ray.worker.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1",
        "ray.worker.shmSize=12Gi",
    )
    spec = _worker(helm.template(MINIMAL, sets=sets))["template"]["spec"]
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert (
        spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"]
        == 1
    )
    assert next(v for v in spec["volumes"] if v["name"] == "shared-mem")["emptyDir"]["sizeLimit"] == "12Gi"


@pytest.mark.parametrize("release", ["demo", "release-name-of-the-greatest-length-helm-allows-53-ch"])
def test_api_is_given_the_head_service_kuberay_creates(helm, release):
    docs = helm.template(MINIMAL, release=release)
    cluster = only(docs, "RayCluster")["metadata"]["name"]
    # KubeRay: a DNS-1035 label of at most 53 characters; head Service "<name>-head-svc", cut when over 50.
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", cluster) and len(f"{cluster}-head-svc") <= 50
    config = only(docs, "ConfigMap")["data"]
    assert config["ANCHOR_OPT_RAY_ADDRESS"] == f"http://{cluster}-head-svc:8265"
    head = only(docs, "RayCluster")["spec"]["headGroupSpec"]
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports["dashboard"] == 8265 and head["rayStartParams"]["dashboard-host"] == "0.0.0.0"


def test_raycluster_fields(helm):
    """Only fields of KubeRay's ray.io/v1 RayCluster (since KubeRay 1.1), with the types it wants."""
    cluster = only(helm.template(MINIMAL), "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert set(spec) <= {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
                         "autoscalerOptions", "headServiceAnnotations", "suspend", "authOptions"}  # fmt: skip
    # authOptions: KubeRay 1.5.1 (mode), 1.6.0 (secretName), which Chart.yaml requires.
    assert set(spec["authOptions"]) <= {"mode", "secretName"} and spec["authOptions"]["mode"] == "token"
    assert "KubeRay operator >= 1.6" in (CHART / "Chart.yaml").read_text()
    train = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    pinned = next(d.split("==")[1] for d in train if d.startswith("ray["))  # the trainer image's Ray
    assert spec["rayVersion"] == pinned and spec["enableInTreeAutoscaling"] is True
    options = spec["autoscalerOptions"]
    assert set(options) <= {"resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts",
                            "securityContext", "idleTimeoutSeconds", "upscalingMode"}  # fmt: skip
    assert options["upscalingMode"] in ("Default", "Aggressive", "Conservative")
    assert isinstance(options["idleTimeoutSeconds"], int)
    head = spec["headGroupSpec"]
    assert set(head) <= {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
    (worker,) = spec["workerGroupSpecs"]
    assert set(worker) <= {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts",
                           "rayStartParams", "template", "scaleStrategy"}  # fmt: skip
    assert all(isinstance(worker[k], int) for k in ("replicas", "minReplicas", "maxReplicas"))
    for params in (head["rayStartParams"], worker["rayStartParams"]):
        assert all(isinstance(v, str) for v in params.values()), params  # KubeRay: map[string]string
    # Training workers go to the worker pods only; the drivers (0 CPUs) run on the head.
    assert head["rayStartParams"]["num-cpus"] == "0"
    # KubeRay takes the first container as Ray's; its autoscaler sidecar mounts the volume "ray-logs".
    head_pod = head["template"]["spec"]
    assert head_pod["containers"][0]["name"] == "ray-head"
    assert "ray-logs" in {v["name"] for v in head_pod["volumes"]}
    assert {m["name"] for m in options["volumeMounts"]} <= {v["name"] for v in head_pod["volumes"]}
    # Our own probes (KubeRay keeps them): each node's dashboard agent, no wget needed in the image.
    for pod in (head_pod, worker["template"]["spec"]):
        for kind in ("readinessProbe", "livenessProbe"):
            assert pod["containers"][0][kind]["httpGet"] == {"path": "/api/healthz", "port": 52365}


@pytest.mark.parametrize(("values", "sets"), [([MINIMAL], S3_KEYS), ([GPU_EXAMPLE], ()), ([MINIMAL], MINIO)])
def test_ray_pods_reach_the_store_like_the_api(helm, values, sets):
    """Head (job drivers) and workers (Ray Train ranks) get the API's S3 settings, and they parse."""
    docs = helm.template(*values, sets=sets)
    secrets = secrets_for(docs)
    api = container_env(
        only(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0], docs, secrets
    )
    s3_api = {k: v for k, v in api.items() if k.startswith("ANCHOR_OPT_S3_")}
    for name, spec in pod_specs([only(docs, "RayCluster")]).items():
        env = container_env(spec["containers"][0], docs, secrets)
        assert {k: v for k, v in env.items() if k.startswith("ANCHOR_OPT_S3_")} == s3_api, name
        with pytest.MonkeyPatch.context() as mp:
            set_env(mp, env)
            StorageSettings()  # the trainer reads them without complaint


def _selects(selector: dict, labels: dict) -> bool:
    """Kubernetes' label selector: every matchLabels pair, every `In` expression."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        assert e["operator"] == "In", e  # the only operator the chart uses
        if labels.get(e["key"]) not in e["values"]:
            return False
    return True


def test_only_the_release_reaches_ray(helm):
    docs = helm.template(
        MINIMAL, sets=("networkPolicy.rayIngressFrom[0].namespaceSelector.matchLabels.team=obs",)
    )
    policy = only(docs, "NetworkPolicy")["spec"]
    pods = _pod_labels(docs)
    assert {k for k, labels in pods.items() if _selects(policy["podSelector"], labels)} == {
        "ray-head",
        "ray-worker",
    }
    release_peer, extra = policy["ingress"]
    (peer,) = release_peer["from"]
    assert "ports" not in release_peer  # every port: the GCS, raylets, object managers, NCCL
    assert {k for k, labels in pods.items() if _selects(peer["podSelector"], labels)} == {
        "api",
        "ray-head",
        "ray-worker",
    }
    stranger = dict(pods["api"], **{"app.kubernetes.io/instance": "another-release"})
    assert not _selects(peer["podSelector"], stranger)
    assert extra == {"from": [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}]}
    assert not any(
        d["kind"] == "NetworkPolicy" for d in helm.template(MINIMAL, sets=("networkPolicy.enabled=false",))
    )


def _pod_labels(docs: list[dict]) -> dict[str, dict]:
    """The labels of the API, head and worker pods, by component."""
    cluster = only(docs, "RayCluster")["spec"]
    templates = [only(docs, "Deployment")["spec"]["template"], cluster["headGroupSpec"]["template"]]
    templates += [g["template"] for g in cluster["workerGroupSpecs"]]
    return {
        t["metadata"]["labels"]["app.kubernetes.io/component"]: t["metadata"]["labels"] for t in templates
    }


# --- Ray's token authentication (issue 14, finding 2) ----------------------------------------------------


def _ray_token_refs(docs: list[dict]) -> dict[str, dict]:
    """Container -> the secretKeyRef its RAY_AUTH_TOKEN comes from, for the API and every Ray pod."""
    refs = {}
    for name, spec in pod_specs(docs).items():
        for container in spec["containers"]:
            for var in container.get("env", []):
                if var["name"] == "RAY_AUTH_TOKEN":
                    refs[f"{name}/{container['name']}"] = var["valueFrom"]["secretKeyRef"]
    return refs


@pytest.mark.parametrize(("values", "sets"), [([MINIMAL], ()), ([MINIMAL], MINIO), ([GPU_EXAMPLE], ())])
def test_ray_wants_a_token_that_the_api_holds(helm, values, sets):
    """Without the NetworkPolicy's help (some clusters ignore it), Ray refuses whoever lacks the token:
    authOptions on the RayCluster (KubeRay gives its pods and the autoscaler the token), the same
    token in the head's and workers' own environment, and in the API's, where service.launcher reads it."""
    docs = helm.template(*values, sets=sets)
    cluster = only(docs, "RayCluster")["spec"]
    secret_name = cluster["authOptions"]["secretName"]
    assert cluster["authOptions"]["mode"] == "token"
    refs = _ray_token_refs(docs)
    assert {k.split("/")[0] + "/" + k.split("/")[-1] for k in refs} >= {"Deployment/api"}
    assert len([k for k in refs if k.startswith("RayCluster/")]) == 2  # head and worker group
    assert all(ref == {"name": secret_name, "key": "auth_token"} for ref in refs.values()), refs
    secrets = secrets_for(docs)
    token = secrets[secret_name]["auth_token"]
    assert len(token) >= 32
    for name, spec in pod_specs(docs).items():
        if name.startswith("RayCluster/"):
            env = container_env(spec["containers"][0], docs, secrets)
            assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == token, name
    (api_container,) = only(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"]
    api = container_env(api_container, docs, secrets)
    with pytest.MonkeyPatch.context() as mp:
        set_env(mp, api)
        mp.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
        assert auth_token() == token  # what RayJobs sends to the head's job server


def test_the_generated_token_is_in_its_secret_alone(helm):
    docs = helm.template(MINIMAL, sets=S3_KEYS)
    secret = ray_token_secret(docs)
    assert secret["metadata"]["name"] == only(docs, "RayCluster")["spec"]["authOptions"]["secretName"]
    token = decoded(secret)["auth_token"]
    assert len(token) == 64 and token.isalnum()
    for doc in docs:
        if doc is not secret:
            assert token not in str(doc), f"{doc['kind']}/{doc['metadata']['name']}"
    assert decoded(ray_token_secret(helm.template(MINIMAL)))["auth_token"] != token  # random per install


def test_an_upgrade_keeps_the_token_the_install_made(helm, tmp_path):
    """`helm upgrade` reads the release's Secret back (lookup): the running Ray pods and the API keep
    agreeing. A cluster without it (a first install) gets a fresh token."""
    name = ray_token_secret(helm.template(MINIMAL))["metadata"]["name"]
    kept = base64.b64encode(b"the-token-the-install-made").decode()
    with kube_api(tmp_path, {("team", name): {"auth_token": kept}}) as cluster:
        upgraded = helm.template(MINIMAL, cluster=cluster)
    assert decoded(ray_token_secret(upgraded))["auth_token"] == "the-token-the-install-made"
    with kube_api(tmp_path, {}) as cluster:
        fresh = decoded(ray_token_secret(helm.template(MINIMAL, cluster=cluster)))["auth_token"]
    assert len(fresh) == 64 and fresh != "the-token-the-install-made"


def test_a_token_secret_of_your_own(helm):
    docs = helm.template(MINIMAL, sets=("ray.auth.existingSecret=team-ray-token",))
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "team-ray-token"]
    assert not [d for d in docs if d["kind"] == "Secret" and "auth_token" in d.get("data", {})]
    assert only(docs, "RayCluster")["spec"]["authOptions"]["secretName"] == "team-ray-token"
    refs = _ray_token_refs(docs)
    assert refs and all(ref == {"name": "team-ray-token", "key": "auth_token"} for ref in refs.values())
    secrets = {"team-ray-token": {"auth_token": EXISTING_RAY_TOKEN}} | secrets_for(docs)
    api = only(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert container_env(api, docs, secrets)["RAY_AUTH_TOKEN"] == EXISTING_RAY_TOKEN
