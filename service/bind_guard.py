"""Open mode (no API tokens) is safe only while nothing but this machine can connect. The settings'
`host` does not say where the server listens: `uvicorn --factory service.app:create_app --host
0.0.0.0` binds every interface while the settings still say 127.0.0.1. So the guard looks at the
server's listening sockets themselves (whichever server made them: uvicorn, gunicorn's inherited
ones, `--fd`): each must have a loopback address.

Which sockets are the server's: those that start listening after the lifespan has started (uvicorn
binds right after it; `uvicorn --workers` children start listening on their inherited socket then
too); if none does within WATCH_FOR_S (sockets handed over already listening, as gunicorn does), every
listening socket of the process; at a request, those on the port it came in on. Not simply every
socket of the process: an in-process Ray driver, for one, listens on all interfaces.

When: `watch`, from the lifespan, as soon as the server listens; refused, the server is stopped with
SIGTERM, so the process exits non-zero. And at the first request, before it is served (`watch` may
not have looked yet; and a server run in a thread, which cannot be stopped from here, answers every
request 503 instead).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import socket
import stat
import threading
import time

log = logging.getLogger(__name__)

WATCH_FOR_S = 10.0  # uvicorn listens milliseconds after the lifespan has started
POLL_S = 0.02


def listening_addresses() -> list[tuple[str, int]]:
    """(address, port) of every listening IPv4/IPv6 TCP socket of this process."""
    fd_dir = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    found = []
    for name in os.listdir(fd_dir):
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))  # a duplicate: closing it leaves the server's socket open
        except (ValueError, OSError):  # not a number, closed meanwhile, or not an inet socket
            continue
        with sock:
            try:
                inet = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
                if inet and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    host, port = sock.getsockname()[:2]
                    found.append((host, port))
            except OSError:
                continue
    return sorted(set(found))


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is not part of it
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def _where(addresses: list[tuple[str, int]]) -> str:
    return ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses)


class LoopbackGuard:
    """Whether open mode may serve: None, or the refusal, naming the sockets and what to do."""

    def __init__(self) -> None:
        self.refusal: str | None = None
        self._verified = False  # checked at a request, so with the server's own socket bound
        self._lock = threading.Lock()

    def check(self, addresses: list[tuple[str, int]]) -> str | None:
        """The refusal if any of these listening sockets is not loopback (remembered)."""
        exposed = sorted(a for a in addresses if not is_loopback(a[0]))
        if exposed and self.refusal is None:
            self.refusal = (
                "no API tokens are configured (ANCHOR_OPT_TOKENS is empty: open mode), but this server "
                f"listens on {_where(exposed)}, which other machines can reach: refusing to serve. "
                "Configure tokens (ANCHOR_OPT_TOKENS, see `anchor-opt token`) or listen on 127.0.0.1 only "
                "(--host 127.0.0.1)"
            )
        return self.refusal

    def refusal_for_request(self, server: tuple | None) -> str | None:
        """Before each request in open mode; checked at the first, on the port it came in on
        (`server` is the ASGI scope's (host, port); None or no port: a Unix socket, local only)."""
        if self._verified or self.refusal is not None:
            return self.refusal
        with self._lock:
            port = server[1] if server and len(server) > 1 else None
            mine = [a for a in listening_addresses() if a[1] == port] if port is not None else []
            if self.check(mine) is None:
                self._verified = True
        return self.refusal

    async def watch(self) -> None:
        """Waits for the server to listen, then checks its sockets; refused, it stops the server
        (SIGTERM to this process, when the server runs in the main thread: uvicorn shuts down and
        re-raises it, so the exit status is non-zero)."""
        before = set(listening_addresses())
        deadline = time.monotonic() + WATCH_FOR_S
        mine: list[tuple[str, int]] = []
        while not mine and time.monotonic() < deadline and self.refusal is None:
            await asyncio.sleep(POLL_S)
            mine = sorted(set(listening_addresses()) - before)
        if self.check(mine or listening_addresses()) is None:
            log.warning("no API tokens configured: serving without authentication, on %s only",
                        _where(mine) or "loopback")  # fmt: skip
            return
        log.critical("%s", self.refusal)
        if threading.current_thread() is threading.main_thread():
            signal.raise_signal(signal.SIGTERM)
        else:
            log.critical("the server runs in a thread, which this cannot stop: each request is a 503")
