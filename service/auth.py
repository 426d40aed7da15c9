"""Bearer-token authentication. Tokens are configured as SHA-256 hashes (`TokenEntry`); a request's
token is hashed and compared with every configured hash in constant time, so neither a match's
position nor a near-miss shows in the timing. Each token acts for one tenant.

`AuthenticateFirst` is where every request is authenticated: an ASGI layer outside the body limit,
so an anonymous request is a 401 before anything reads, buffers or validates its body. In open mode
(no tokens) it serves only while the server's listening sockets are all loopback
(service.bind_guard): the settings' host is not what uvicorn was told to bind.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Collection
from dataclasses import dataclass

from service.bind_guard import LoopbackGuard
from service.settings import TokenEntry

OPEN_TENANT = "default"  # who every request is in open mode (no tokens configured)


class AuthError(Exception):
    """Missing or invalid credentials: answered 401 with WWW-Authenticate: Bearer."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Principal:
    tenant: str
    name: str | None = None  # the token's name, when it has one
    dataset_roots: tuple[str, ...] | None = None  # the token's own dataset roots (None: the service's)


def hash_token(token: str) -> str:
    """What to put in a TokenEntry's sha256 for `token`."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random API token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class Authenticator:
    def __init__(self, entries: list[TokenEntry]):
        self._entries = [(bytes.fromhex(e.sha256), _principal(e)) for e in entries]

    @property
    def open(self) -> bool:
        return not self._entries

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an `Authorization` header value; AuthError if missing or invalid."""
        if self.open:
            return Principal(OPEN_TENANT)
        if not authorization:
            raise AuthError("missing bearer token (send 'Authorization: Bearer <token>')")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("missing bearer token (the Authorization header must be 'Bearer <token>')")
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for expected, principal in self._entries:  # every entry, always: no early exit to time
            if hmac.compare_digest(digest, expected):
                found = principal
        if found is None:
            raise AuthError("invalid token")
        return found


def _principal(entry: TokenEntry) -> Principal:
    roots = tuple(entry.dataset_roots) if entry.dataset_roots is not None else None
    return Principal(entry.tenant, entry.name, roots)


class AuthenticateFirst:
    """ASGI middleware: every HTTP request but those to `public` paths is authenticated from its
    Authorization header before the app sees it, and a failure is answered 401 here. The principal
    goes to the request's state (`request.state.principal`), which the routes read: this is the one
    place that decides who a request acts for. In open mode, `guard` must have found only loopback
    listening sockets, else every request (public ones too) is a 503."""

    def __init__(self, app, auth: Authenticator, public: Collection[str], guard: LoopbackGuard | None = None):
        self.app, self.auth, self.guard = app, auth, guard
        # A path ending in "/" is public with everything under it (Swagger UI's files).
        self.public = frozenset(p for p in public if not p.endswith("/"))
        self.public_prefixes = tuple(p for p in public if p.endswith("/"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        guarded = self.auth.open and self.guard is not None
        if guarded and (refusal := self.guard.refusal_for_request(scope.get("server"))):
            return await _answer(send, 503, refusal, {})
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        if path not in self.public and not path.startswith(self.public_prefixes):
            try:
                principal = self.auth.authenticate(_authorization(scope))
            except AuthError as exc:
                return await _answer(send, 401, exc.detail, {"www-authenticate": "Bearer"})
            # A new state dict for this request (the scope itself stays: the router records the route
            # in it for telemetry): were the server to share one dict between requests (the ASGI spec
            # says it copies), one request's principal must still never be another's.
            scope["state"] = {**scope.get("state", {}), "principal": principal}
        return await self.app(scope, receive, send)


def _authorization(scope) -> str | None:
    """The first Authorization header, as Starlette's `request.headers.get` reads it."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return value.decode("latin-1")
    return None


async def _answer(send, status: int, detail: str, headers: dict[str, str]) -> None:
    """A `Problem` body (as service.app's error handlers write), sent without reading the request."""
    body = json.dumps({"status": status, "detail": detail, "errors": None}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
