"""How many job reads per second does the control plane serve, and how fast? Starts the real service
(`uvicorn --factory service.app:create_app`, scheduler included, in a child process on 127.0.0.1)
over a local store holding 200 finished jobs, and drives it from this process.

The store is made honestly: one small job (synthetic data, 64 px model, 2 epochs) is trained in
this process into a job created with the store's API; 199 more jobs are created the same way and
get a copy of that job's documents (status, snapshots, metrics, result, artifacts; not its
checkpoints), so each of the 200 reads exactly like a real finished job. The service runs in token
mode (every request pays for authentication) with a Ray address nothing listens on: every job has
ended, so the scheduler never asks Ray.

Load: CONCURRENCY (8) client threads, each with its own keep-alive connection (http.client), send
requests back to back (a closed loop: a handful of dashboards and CLIs polling at once), alternating
`GET /jobs/{id}` and `GET /jobs/{id}/anchors/latest` over random job ids. A warm-up, then a bounded
measured window:

    rps = 200 responses completed in the window / window seconds
    p50_ms, p99_ms = latency percentiles of those responses (client side, send to last byte read)
    errors = requests in the window answered other than 200, or failed (connection, timeout)

The service is one Python process, so throughput hardly changes from 1 to 32 connections; more
connections only lengthen its queue, and latency grows with them (Little's law). At 8, p99 is a
request waiting behind 7 others, plus whatever stalls the process (the scheduler's tick). Client
and service share the machine (the target is for 2 cores): the client's own overhead counts too.
Target: rps >= 500, p99_ms <= 50, errors = 0.

Final line: api_load: rps=R p50_ms=P p99_ms=Q errors=E
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python bench/api_load.py` from a checkout

from service.auth import hash_token, new_token  # noqa: E402
from trainer.contract.layout import CHECKPOINT_PREFIX  # noqa: E402
from trainer.contract.storage import LocalStorage  # noqa: E402
from trainer.contract.store import JobStore  # noqa: E402

JOBS = 200
TENANT = "bench"
CONCURRENCY = 8  # enough to keep the service busy and its thread pool concurrent (module docstring)
UNUSED_RAY = "http://127.0.0.1:9"  # the discard port: nothing answers, and nothing should ask


def train_one_job(store: JobStore) -> str:
    """A real finished job: the unit tests' small run (synthetic data, 64 px, 2 epochs, 16 steps),
    trained in this process into a job created with the store's API."""
    from trainer.config import TrainConfig
    from trainer.contract.spec import JobSpec
    from trainer.train.local_run import train

    cfg = TrainConfig.model_validate(
        {
            "data": {"synthetic": {"num_train": 64, "num_val": 16}},
            "model": {"image_size": 64, "width": 0.5},
            "optim": {"batch_size": 8, "epochs": 2, "lr_warmup_steps": 2},
            "tricks": {"warmup_steps": 6},
            "output": {"snapshot_every": 4},
        }
    )
    record = store.create(JobSpec.model_validate(cfg.model_dump()), submitted_by=TENANT)
    train(cfg, store.run_uri(record.id))
    return record.id


def fill_store(root: Path, jobs: int) -> list[str]:
    """`jobs` finished jobs: one trained, the others created and given copies of its documents."""
    store = JobStore(LocalStorage(root))
    source = train_one_job(store)
    prefix = store.key(source)
    keys = [o.key[len(prefix) :] for o in store.storage.list(prefix)]
    documents = {k: store.storage.read_bytes(prefix + k) for k in keys if not k.startswith(CHECKPOINT_PREFIX)}
    del documents["job.json"]  # each job's own record, written by create
    record = store.record(source)
    ids = [source]
    for i in range(1, jobs):
        job_id = f"{source}-{i:03d}"
        store.create(record.spec, job_id=job_id, submitted_by=TENANT)
        for key, data in documents.items():
            store.storage.write_bytes(store.key(job_id, key), data)
        ids.append(job_id)
    return ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(store_root: Path, token: str, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANCHOR_OPT_")}
    env |= {
        "ANCHOR_OPT_STORE_URI": str(store_root),
        "ANCHOR_OPT_TOKENS": f'[{{"tenant": "{TENANT}", "sha256": "{hash_token(token)}"}}]',
        "ANCHOR_OPT_RAY_ADDRESS": UNUSED_RAY,
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=env)


def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_healthy(server: subprocess.Popen, port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the service exited ({server.returncode}) before answering /healthz")
        try:
            if get(port, "/healthz")[0] == 200:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the service did not answer /healthz within {timeout_s:.0f} s")


def check_a_job(port: int, token: str, job_id: str) -> None:
    """What the load reads is what a real finished job serves (once, before timing)."""
    status, body = get(port, f"/jobs/{job_id}", token)
    status_latest, latest = get(port, f"/jobs/{job_id}/anchors/latest", token)
    job = json.loads(body)
    served = status == status_latest == 200 and job["state"] == "SUCCEEDED" and job["artifacts"]
    if not served or job["latest_anchors"] != json.loads(latest):
        raise RuntimeError(f"job {job_id} is not served as a finished job: {body[:500]!r}")


def poll(port: int, token: str, ids: list[str], seed: int, stop_at: float, out: list) -> None:
    """One keep-alive client until `stop_at`: appends (finished_at, seconds, ok) per request."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = seed
    while (start := time.perf_counter()) < stop_at:
        n += 1
        path = f"/jobs/{rng.choice(ids)}" + ("/anchors/latest" if n % 2 else "")
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            conn.close()  # reconnects on the next request
            ok = False
        end = time.perf_counter()
        out.append((end, end - start, ok))
    conn.close()


def drive(port: int, token: str, ids: list[str], warmup_s: float, seconds: float, concurrency: int):
    """(rps, p50 ms, p99 ms, errors) over the measured window after the warm-up."""
    begin = time.perf_counter() + warmup_s
    end = begin + seconds
    results: list[list] = [[] for _ in range(concurrency)]
    threads = [
        threading.Thread(target=poll, args=(port, token, ids, i, end, results[i]), daemon=True)
        for i in range(concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    window = [(s, ok) for r in results for finished, s, ok in r if begin <= finished <= end]
    latencies = sorted(s * 1e3 for s, ok in window if ok)
    errors = len(window) - len(latencies)
    if len(latencies) < 2:
        raise RuntimeError(f"{errors} requests in the measured window, none answered 200")
    p99 = statistics.quantiles(latencies, n=100)[98]
    return len(latencies) / seconds, statistics.median(latencies), p99, errors


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="client connections")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # cleaned up like Ctrl-C
    root = Path(tempfile.mkdtemp(prefix="api-load-"))
    server = None
    try:
        started = time.perf_counter()
        ids = fill_store(root, JOBS)
        print(f"store: {len(ids)} finished jobs in {root} ({time.perf_counter() - started:.1f} s)")
        token, port = new_token(), free_port()
        server = start_service(root, token, port)
        wait_healthy(server, port)
        check_a_job(port, token, ids[0])
        print(f"load: {args.concurrency} clients, {args.warmup:g} s warm-up, {args.seconds:g} s measured")
        rps, p50, p99, errors = drive(port, token, ids, args.warmup, args.seconds, args.concurrency)
        if server.poll() is not None:
            raise RuntimeError(f"the service exited ({server.returncode}) during the load")
        print(f"api_load: rps={rps:.1f} p50_ms={p50:.1f} p99_ms={p99:.1f} errors={errors}")
    finally:
        if server is not None:
            stop(server)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
