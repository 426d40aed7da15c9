"""A stand-in for the Kubernetes API server, just enough for `helm template --dry-run=server`: API
discovery for the kinds the chart renders, and GET of the Secrets it is given (404 for anything else).
Helm's `lookup` then reads what a cluster would hold, as it does during `helm upgrade`; there is no
cluster here, so this is the one part of Kubernetes the tests fake."""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# (group, version) -> [(kind, plural)], the kinds the chart renders
KINDS = {
    ("", "v1"): [("ConfigMap", "configmaps"), ("Secret", "secrets"), ("Service", "services"),
                 ("ServiceAccount", "serviceaccounts"), ("PersistentVolumeClaim", "persistentvolumeclaims")],
    ("apps", "v1"): [("Deployment", "deployments")],
    ("batch", "v1"): [("Job", "jobs")],
    ("networking.k8s.io", "v1"): [("NetworkPolicy", "networkpolicies"), ("Ingress", "ingresses")],
    ("ray.io", "v1"): [("RayCluster", "rayclusters")],
}  # fmt: skip


_SECRET_PATH = re.compile(r"/api/v1/namespaces/([^/]+)/secrets/([^/]+)")


def _resources(group: str, version: str) -> dict:
    resources = [
        {"name": plural, "singularName": kind.lower(), "namespaced": True, "kind": kind, "verbs": ["get"]}
        for kind, plural in KINDS[(group, version)]
    ]
    group_version = f"{group}/{version}".lstrip("/")
    return {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}


def _groups() -> dict:
    groups = [
        {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
         "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
        for g, v in KINDS if g
    ]  # fmt: skip
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _handler(secrets: dict[tuple[str, str], dict[str, str]], release: str):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?")[0]
            body: dict | None = None
            if path == "/version":
                body = {"major": "1", "minor": "30", "gitVersion": "v1.30.0"}
            elif path == "/api":
                body = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            elif path == "/apis":
                body = _groups()
            elif path == "/api/v1":
                body = _resources("", "v1")
            elif m := re.fullmatch(r"/apis/([^/]+)/([^/]+)", path):
                body = _resources(*m.groups()) if m.groups() in KINDS else None
            elif (m := _SECRET_PATH.fullmatch(path)) and m.groups() in secrets:
                # As the release's install left it: Helm refuses to take over a Secret it did not make.
                meta = {"name": m.group(2), "namespace": m.group(1)}
                meta["labels"] = {"app.kubernetes.io/managed-by": "Helm"}
                meta["annotations"] = {"meta.helm.sh/release-name": release}
                meta["annotations"]["meta.helm.sh/release-namespace"] = m.group(1)
                body = {"kind": "Secret", "apiVersion": "v1", "metadata": meta, "data": secrets[m.groups()]}
            if body is None:
                body, status = {"kind": "Status", "apiVersion": "v1", "reason": "NotFound", "code": 404}, 404
            else:
                status = 200
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    return Handler


@contextmanager
def kube_api(
    folder: Path, secrets: dict[tuple[str, str], dict[str, str]], release: str = "demo"
) -> Iterator[Path]:
    """Serves `secrets` ((namespace, name) -> base64 data), made by Helm release `release`, on
    127.0.0.1; yields a kubeconfig for it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(secrets, release))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = folder / "kubeconfig-fake-api"
    url = f"http://127.0.0.1:{server.server_address[1]}"
    config.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        })
    )  # fmt: skip
    try:
        yield config
    finally:
        server.shutdown()
        thread.join(timeout=10)
