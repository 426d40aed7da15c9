"""Bearer tokens: hashes only in the configuration, one tenant per token, open mode without tokens."""

from __future__ import annotations

import pytest

from service.auth import OPEN_TENANT, Authenticator, AuthError, hash_token, new_token
from service.settings import TokenEntry


def entries(**tokens: str) -> list[TokenEntry]:
    return [
        TokenEntry(tenant=tenant, sha256=hash_token(token), name=f"{tenant}-ci")
        for tenant, token in tokens.items()
    ]


def test_each_token_acts_for_its_tenant():
    auth = Authenticator(entries(vision="tok-v", speech="tok-s"))
    assert auth.authenticate("Bearer tok-v").tenant == "vision"
    assert auth.authenticate("bearer tok-s").name == "speech-ci"


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Basic dXNlcjpwYXNz", "missing"),
        ("Bearer ", "missing"),
        ("Bearer tok-x", "invalid"),
        ("Bearer " + hash_token("tok-v"), "invalid"),
    ],  # fmt: skip
)
def test_missing_or_wrong_credentials(header, needle):
    auth = Authenticator(entries(vision="tok-v"))
    with pytest.raises(AuthError) as err:
        auth.authenticate(header)
    assert needle in err.value.detail


def test_open_mode_without_tokens():
    assert Authenticator([]).authenticate(None).tenant == OPEN_TENANT


def test_new_tokens_are_long_and_different():
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 40 and len(hash_token(a)) == 64
