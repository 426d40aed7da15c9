"""bench/gpu_check.py without a GPU (the check itself needs one, and is not run here): it refuses at
once, with status 2 and a message that says what it needs, before rendering or training anything."""

import subprocess
import sys

from tests.helpers import REPO


def test_without_cuda_it_exits_2_saying_what_it_needs():
    # CUDA_VISIBLE_DEVICES="" hides any GPU, so this holds on a GPU machine too.
    env = {"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert "gpu_check: CUDA is not available" in done.stderr and "NVIDIA GPU" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
