"""What a Ray this process starts itself is set up with (trainer.train.ray_run.ensure_ray, for
`anchor-opt train --workers N` and tests): only this process can drive it.

Ray runs any code for whoever reaches its GCS, so such a Ray

- requires a token (Ray 2.60 turns token mode on for a new local cluster): a fresh random one per
  process, in a file only this user can read (0600, in a private 0700 folder), found by Ray's
  processes and workers through `RAY_AUTH_TOKEN_PATH`, instead of Ray's own `~/.ray/auth_token`
  (created readable by everyone, and shared by every Ray of the user); never in a command line or a log;
- binds every port to 127.0.0.1: `_node_ip_address` 127.0.0.1, and Ray's single-machine mode
  (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`), without which Ray 2.60 on Linux swaps a loopback address
  for the machine's routable one and binds its GCS and raylet to every interface.

The variables are set in this process's environment because Ray's daemons and workers inherit it, and
this process itself must present the token to its own GCS. The service's embedded head does the same
for a separate head process (service.ray_head).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile

LOOPBACK = "127.0.0.1"
# Read by Ray at import: no usage reporting (offline machines), and prints from the workers once.
RAY_DEFAULTS = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}


def set_ray_defaults() -> None:
    """RAY_DEFAULTS, where the environment does not say otherwise; call before `import ray`."""
    for name, value in RAY_DEFAULTS.items():
        os.environ.setdefault(name, value)


def lock_down() -> dict:
    """Sets this process's environment for a token-only, loopback-only local Ray; returns the extra
    ray.init arguments that go with it."""
    folder = tempfile.mkdtemp(prefix="anchor-opt-ray-")  # 0700
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = os.path.join(folder, "auth_token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    os.environ.pop("RAY_AUTH_TOKEN", None)  # the file is the one token this Ray knows
    # Not RAY_AUTH_MODE: ray.init turns token mode on itself for a new local cluster, and refreshes
    # its cached config when it does; setting the variable here, after `import ray`, would skip that.
    os.environ.update({"RAY_AUTH_TOKEN_PATH": path, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    # Ray reads that variable once, at import (ray_constants.ENABLE_RAY_CLUSTER), and this process
    # has imported Ray already: its daemons and workers read the variable, this process the constant.
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    return {"_node_ip_address": LOOPBACK}
