"""Fixtures shared by every test package."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import SHARED_DATA, free_port

if TYPE_CHECKING:  # imported lazily below: only S3 tests pay for boto3 and moto
    from trainer.contract.storage import StorageSettings


@pytest.fixture
def shared_data() -> Path:
    """`../shared/data`, or a skip that says why: these tests need the real datasets beside the repo."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (the ../shared/data folder beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a real S3 HTTP endpoint (moto server) on 127.0.0.1, with fake credentials in the env.

    The AWS_* variables point boto3's default chain at fake keys (and away from any real ~/.aws
    profile) for as long as the server runs, and are restored when the session ends.
    """
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }.items():
            env.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        for name in [n for n in os.environ if n.startswith("ANCHOR_OPT_S3_") or n == "ANCHOR_OPT_CACHE_DIR"]:
            env.delenv(name)  # a developer's own storage settings must not reach the tests
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request otherwise
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, tmp_path: Path) -> tuple[str, StorageSettings]:
    """A fresh, uniquely named bucket, and StorageSettings for the endpoint (cache under tmp_path).

    Credentials come from the default chain (the fake AWS_* variables), as in production.
    """
    from trainer.contract.storage import StorageSettings, s3_client

    bucket = f"test-{uuid.uuid4().hex[:16]}"
    settings = StorageSettings(endpoint_url=s3_endpoint, path_style=True, cache_dir=tmp_path / "cache")
    s3_client(settings).create_bucket(Bucket=bucket)
    return bucket, settings
