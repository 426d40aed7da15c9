"""A process group the service started (the embedded Ray head's): whether it lives, and stopping it."""

from __future__ import annotations

import os
import signal
import time


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's group now holds that number: not ours
        return False
    return True


def group_gone(pgid: int, wait_s: float) -> bool:
    """Waits up to `wait_s` for process group `pgid` to be empty; whether it is."""
    deadline = time.monotonic() + wait_s
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# Measured: a head's process group is still there 20 s after SIGTERM (its GCS server hangs on it),
# so a long grace only delays the SIGKILL that always follows. The raylet and the dashboard have
# flushed their logs by then; nothing of ours is lost (job state lives in the store).
STOP_GRACE_S = 2.0


def kill_group(pgid: int, grace_s: float) -> None:
    """SIGTERM to the group, SIGKILL after `grace_s` (the GCS server can hang on SIGTERM)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
        if not group_gone(pgid, grace_s):
            os.killpg(pgid, signal.SIGKILL)
            group_gone(pgid, 5.0)
    except ProcessLookupError:
        pass
