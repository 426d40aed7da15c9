"""trainer.train.local_ray: a Ray this process starts (anchor-opt train --workers N) takes commands only
from this process: every port on 127.0.0.1, and a token no other process has.

The Ray runs in a child process of the test (its own session), so that what it sets up is seen from
outside, the way another user or machine would see it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile

from tests.helpers import REPO
from tests.processes import listening, loopback, session_processes

STARTER = """
import os, sys
from trainer.train.ray_run import ensure_ray, ray
assert ensure_ray(num_cpus=1, temp_dir=sys.argv[1] or None)  # '': Ray's default
assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42  # our own workers get the token
print(ray._private.worker.global_worker.node.gcs_address, os.environ["RAY_AUTH_TOKEN_PATH"], flush=True)
sys.stdin.read()  # until the test is done with us
ray.shutdown()
"""

OUTSIDER = """
import sys, ray
ray.init(address=sys.argv[1])  # without the token Ray gives up (and exits) once its GCS timeout passes
print("connected", ray.cluster_resources(), flush=True)
"""


def test_a_local_ray_listens_on_loopback_and_wants_a_token(tmp_path):
    temp = tempfile.mkdtemp(prefix="rloc-", dir="/tmp")  # short: Ray puts sockets under it
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"PYTHONPATH": str(REPO)}
    ray = subprocess.Popen([sys.executable, "-c", STARTER, temp], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)  # fmt: skip
    try:
        gcs, token_path = ray.stdout.readline().split()
        assert gcs.startswith("127.0.0.1:"), gcs
        assert os.stat(token_path).st_mode & 0o077 == 0  # the token file is this user's alone
        sockets = listening(session_processes(ray.pid))
        assert len(sockets) >= 3, sockets  # the GCS, the raylet, the workers: all seen
        assert [s for s in sockets if not loopback(s[0])] == []

        def connect(extra: dict) -> subprocess.CompletedProcess:
            # Single-machine mode too, or the client turns 127.0.0.1 into the machine's address.
            quick = {"HOME": str(tmp_path), "RAY_gcs_rpc_server_reconnect_timeout_s": "5",
                     "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # fmt: skip
            return subprocess.run([sys.executable, "-c", OUTSIDER, gcs], capture_output=True, text=True,
                                  env=env | quick | extra, timeout=180)  # fmt: skip

        outsider = connect({})
        assert outsider.returncode != 0 and "connected" not in outsider.stdout, outsider.stdout
        assert "InvalidAuthToken" in outsider.stderr, outsider.stderr[-2000:]
        holder = connect({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token_path})  # with it: in
        assert holder.stdout.startswith("connected"), holder.stdout + holder.stderr[-2000:]
    finally:
        ray.stdin.close()
        ray.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_local_ray_is_ours_even_where_another_is_recorded(tmp_path):
    """Issue 17, finding 10: `ray.init()` without an address joins the Ray that a `ray start` in
    Ray's default temp dir recorded (or any GCS running here) instead of starting one; a run's own
    Ray is started all the same, in Ray's default temp dir (`anchor-opt train --workers 2` gives
    none). The recorded one here names a port where nothing listens."""
    default_temp = tempfile.mkdtemp(prefix="rlod-", dir="/tmp")  # RAY_TMPDIR: Ray's default is <it>/ray
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        recorded = f"127.0.0.1:{s.getsockname()[1]}"
    os.makedirs(os.path.join(default_temp, "ray"))
    with open(os.path.join(default_temp, "ray", "ray_current_cluster"), "w") as f:
        f.write(recorded)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"PYTHONPATH": str(REPO)}
    env |= {"RAY_TMPDIR": default_temp, "RAY_gcs_rpc_server_reconnect_timeout_s": "5"}
    ray = subprocess.Popen([sys.executable, "-c", STARTER, ""], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                           start_new_session=True)  # fmt: skip
    try:
        line = ray.stdout.readline()
        assert line, ray.communicate(timeout=60)[1][-2000:]
        gcs = line.split()[0]
        assert gcs.startswith("127.0.0.1:") and gcs != recorded
    finally:
        ray.stdin.close()
        ray.wait(timeout=60)
        shutil.rmtree(default_temp, ignore_errors=True)
