"""Bearer-token authentication. Tokens are configured as SHA-256 hashes (`TokenEntry`); a request's
token is hashed and compared with every configured hash in constant time, so neither a match's
position nor a near-miss shows in the timing. Each token acts for one tenant."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

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
