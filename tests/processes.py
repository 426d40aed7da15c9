"""The processes of a Ray on this machine and the TCP sockets they listen on, read from /proc: for
tests that check a Ray the project starts listens on loopback only (tests/service/test_launcher.py,
tests/trainer/train/test_local_ray.py)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path


def session_processes(pgid: int) -> set[int]:
    """The processes of session `pgid` (`ray start` leads a head's: its pid is the session id) and
    every descendant: job drivers run in sessions of their own."""
    parents, sessions = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)], sessions[int(entry.name)] = int(fields[1]), int(fields[3])
    found = {pid for pid, sid in sessions.items() if sid == pgid}
    while more := {pid for pid, ppid in parents.items() if ppid in found} - found:
        found |= more
    return found


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    return ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))


def listening(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN state that a process of `pids` holds."""
    owner = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
        except OSError:  # the process ended meanwhile
            continue
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in owner:  # 0A: LISTEN
                host, port = local.split(":")
                found.append((str(_address(host)), int(port, 16), owner[inode]))
    return found


def loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)
