"""How create_app wires the API, over real HTTP: who is authenticated when (before the body is read),
what /metrics and /readyz show and to whom, and open mode refusing to serve beyond loopback (with
uvicorn in a subprocess, the way service/app.py's docstring runs it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.auth import hash_token
from service.settings import ServiceSettings, TokenEntry
from tests.helpers import client, free_port, serving
from trainer.contract.storage import StorageSettings

REPO = Path(__file__).resolve().parents[2]
TOKEN = "token-of-team-a"
SPEC = {"name": "small", "optim": {"epochs": 1, "batch_size": 8}, "data": {"synthetic": {"num_train": 64}}}
HANG_S = 60  # bounds against a hang, not performance checks


def settings(tmp_path, **overrides) -> ServiceSettings:
    tokens = [TokenEntry(tenant="team-a", sha256=hash_token(TOKEN))]
    overrides = {"store_uri": str(tmp_path / "store"), "max_body_bytes": 64 * 1024} | overrides
    return ServiceSettings(tokens=tokens, **overrides)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with serving(create_app(settings(tmp_path_factory.mktemp("app")), schedule=False)) as base:
        yield base


def test_an_anonymous_request_is_a_401_whatever_its_body(api):
    """Finding 11 of issue 14. Before: a bad body was a 422 and an oversized one a 413, each before
    the 401 (the body limit read up to 1 MiB, then validation ran, then the route's auth)."""
    anon = client(api)
    for answer in (
        anon.post("/jobs", content=b"{not json", headers={"content-type": "application/json"}),
        anon.post("/jobs", json={"optim": {"epochs": -3}}),
        anon.post("/jobs", content=b"x" * (200 * 1024)),  # over the 64 KiB limit
        anon.get("/jobs/../../etc/passwd"),
        anon.get("/jobs/no-such-job/anchors"),
    ):
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"] == "Bearer" and "bearer token" in answer.json()["detail"]
    wrong = client(api, "not-a-token").post("/jobs", content=b"{not json")
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid token"
    # With a token, the body is read and checked as before.
    a, as_json = client(api, TOKEN), {"content-type": "application/json"}
    assert a.post("/jobs", content=b"{not json", headers=as_json).status_code == 422
    assert a.post("/jobs", content=b"x" * (200 * 1024)).status_code == 413
    assert a.post("/jobs", json=SPEC).status_code == 201
    assert anon.get("/healthz").status_code == 200 and anon.get("/openapi.json").status_code == 200


def test_the_401_comes_without_reading_the_body(api):
    """Headers announcing a 50 KB body, and no body: the answer must not wait for it (before, the
    body limit waited for all of it, and only then did anything look at the token)."""
    host, port = api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=HANG_S) as sock:
        sock.sendall(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        sock.sendall(b"Content-Length: 50000\r\n\r\n")
        sock.settimeout(20)  # a hang bound: the server answers at once, or waits for a body never sent
        try:
            head = sock.recv(65536)
        except TimeoutError:
            head = b"(no answer: the server was waiting for the body)"
    assert head.startswith(b"HTTP/1.1 401"), head


def test_metrics_need_a_token_unless_public_and_count_jobs_at_most_every_cache_s(tmp_path):
    """Finding 11: /metrics was anonymous (job counts of every tenant) and read every status per scrape."""
    with serving(create_app(settings(tmp_path, metrics_cache_s=3600), schedule=False)) as base:
        anon, a = client(base), client(base, TOKEN)
        assert anon.get("/metrics").status_code == 401
        assert 'anchor_opt_jobs{state="QUEUED"} 0.0' in a.get("/metrics").text
        assert a.post("/jobs", json=SPEC).status_code == 201
        assert 'anchor_opt_jobs{state="QUEUED"} 0.0' in a.get("/metrics").text  # counted an hour ago
    public = settings(tmp_path, metrics_public=True, metrics_cache_s=0)
    with serving(create_app(public, schedule=False)) as base:
        text = client(base).get("/metrics").text  # public; counted again (the job of the first app)
        assert 'anchor_opt_jobs{state="QUEUED"} 1.0' in text


def test_readyz_says_unavailable_and_logs_why(tmp_path, caplog):
    """Finding 11: /readyz echoed the storage error (endpoint, bucket) to anyone."""
    dead = f"http://127.0.0.1:{free_port()}"
    s3 = StorageSettings(endpoint_url=dead, access_key_id="k", secret_access_key="s", max_attempts=1)
    app = create_app(settings(tmp_path, store_uri="s3://secret-bucket/store", s3=s3), schedule=False)
    with serving(app) as base:
        ready = client(base).get("/readyz")
    assert ready.status_code == 503, ready.text
    checks = {"storage": "unavailable", "ray": "unavailable"}
    assert ready.json() == {"status": "unavailable", "checks": checks}
    assert "secret-bucket" not in ready.text and dead not in ready.text
    assert any("readiness: storage unavailable" in r.getMessage() for r in caplog.records)


def _uvicorn(tmp_path, host: str, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANCHOR_OPT_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "ANCHOR_OPT_STORE_URI": str(tmp_path / "store"),
        "ANCHOR_OPT_RAY_ADDRESS": f"http://127.0.0.1:{free_port()}",  # nothing there: no Ray head started
    }
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app"]
    cmd += ["--host", host, "--port", str(port)]
    pipe = subprocess.PIPE
    return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=pipe, stderr=pipe, text=True)


def test_open_mode_on_every_interface_refuses_to_serve(tmp_path):
    """Finding 12 of issue 14: with no tokens, `uvicorn --factory service.app:create_app --host
    0.0.0.0` served everyone (the settings' host, 127.0.0.1, was all that was checked)."""
    port = free_port()
    proc = _uvicorn(tmp_path, "0.0.0.0", port)
    try:
        out, err = proc.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still serving on 0.0.0.0 without tokens: {err[-2000:]}")
    assert proc.returncode != 0, err
    assert f"listens on 0.0.0.0:{port}" in err and "ANCHOR_OPT_TOKENS" in err and "--host 127.0.0.1" in err


def test_open_mode_on_loopback_serves(tmp_path):
    port = free_port()
    proc = _uvicorn(tmp_path, "127.0.0.1", port)
    try:
        deadline = time.monotonic() + HANG_S
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                jobs = httpx.get(f"http://127.0.0.1:{port}/jobs", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)
        assert jobs.status_code == 200 and jobs.json()["items"] == []  # open mode: no token needed
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=HANG_S)
    assert f"serving without authentication, on 127.0.0.1:{port} only" in err


def test_open_mode_in_a_thread_on_every_interface_answers_503(tmp_path):
    """A server in a thread cannot be stopped by the guard: it refuses each request instead."""
    import threading

    import uvicorn

    app = create_app(ServiceSettings(store_uri=str(tmp_path / "store")), schedule=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="0.0.0.0", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + HANG_S
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        for path in ("/jobs", "/healthz"):
            answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
            assert answer.status_code == 503, answer.text
            assert "ANCHOR_OPT_TOKENS" in json.loads(answer.text)["detail"]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
