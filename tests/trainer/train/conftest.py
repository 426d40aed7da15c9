"""Fixtures of the training tests: a job store in S3 (the moto server) for the Ray Train jobs."""

from __future__ import annotations

import pytest

from trainer.contract.storage import StorageSettings, open_storage, s3_client
from trainer.contract.store import JobStore


@pytest.fixture(scope="module")
def s3_store(s3_endpoint, tmp_path_factory):
    """A job store in a fresh bucket; explicit keys, so Ray's worker processes need no environment."""
    settings = StorageSettings(
        endpoint_url=s3_endpoint,
        path_style=True,
        access_key_id="testing",
        secret_access_key="testing",
        cache_dir=tmp_path_factory.mktemp("cache"),
    )
    s3_client(settings).create_bucket(Bucket="jobs-ray")
    uri = "s3://jobs-ray/root"
    return uri, settings, JobStore(open_storage(uri, settings))
