"""Where the embedded Ray head lives on this machine: its temp dir, what Ray records there, the
ports it binds, and how to ask a job server whether it is one (service.ray_head starts the head).

Ray's job supervisor tells each driver which cluster to join from `ray_current_cluster` in the
head's temp dir, which every `ray start` in that dir rewrites, so the temp dir is this service's own.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

CURRENT_CLUSTER = "ray_current_cluster"  # Ray's: the GCS address of the last `ray start` in a temp dir


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def probe(address: str, token: str | None = None, timeout_s: float = 5.0) -> int | None:
    """HTTP status of GET <address>/api/version (200: a Ray job server that takes `token`; 401 or
    403: one that wants another), None if nothing answers as a Ray job server."""
    req = urllib.request.Request(address.rstrip("/") + "/api/version", headers=auth_headers(token))
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status if "ray_version" in json.loads(resp.read() or b"{}") else None
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):  # refused, timed out, reset; or not JSON: not a Ray job server
        return None


def default_temp_dir() -> str:
    """The embedded head's temp dir unless one is set: this user's own beside Ray's default (which
    is RAY_TMPDIR or /tmp, + /ray), never Ray's default itself, which any other Ray on the machine uses."""
    return os.path.join(os.environ.get("RAY_TMPDIR", "/tmp"), f"anchor-opt-ray-{os.getuid()}")


def temp_dir_path(temp_dir: str | None) -> Path:
    return Path(temp_dir or default_temp_dir())


def recorded_gcs(temp: Path) -> str | None:
    """The GCS address the last `ray start` in `temp` recorded (Ray's `ray_current_cluster`)."""
    try:
        return (temp / CURRENT_CLUSTER).read_text().strip() or None
    except OSError:
        return None


def answers(address: str) -> bool:
    """Whether something accepts TCP connections at host:port."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def port_taken(port: int) -> bool:
    """Whether 127.0.0.1:`port` cannot be bound (as Ray's dashboard binds it, SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port(not_this: int) -> str:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != not_this:
            return str(port)
