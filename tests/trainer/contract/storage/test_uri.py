"""trainer.contract.storage.uri and StorageSettings: storage URIs to backends, settings from the
environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from trainer.contract.storage import S3Storage, StorageSettings, open_storage


def test_open_storage_parses_uris(tmp_path, monkeypatch):
    settings = StorageSettings(endpoint_url="http://127.0.0.1:1", path_style=True)
    s3 = open_storage("s3://datasets/voc/VOC2007/", settings)
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("datasets", "voc/VOC2007/")
    assert s3.uri == "s3://datasets/voc/VOC2007" and s3.uri_for("a.xml") == "s3://datasets/voc/VOC2007/a.xml"
    assert open_storage("s3://datasets", settings).prefix == ""
    spaced = tmp_path / "a b"
    assert open_storage(spaced.as_uri()).root == spaced
    assert open_storage(f"file://localhost{tmp_path}").root == tmp_path
    monkeypatch.chdir(tmp_path)
    assert open_storage("runs").root == tmp_path / "runs"
    assert open_storage(str(tmp_path)).uri == tmp_path.as_uri()


@pytest.mark.parametrize(
    "uri", ["http://host/x", "ftp://host/p", "s3://", "s3:///key", "file://host/srv", "file://relative", ""]
)
def test_open_storage_rejects_other_uris(uri):
    with pytest.raises(ValueError, match=re.escape(repr(uri)) if uri else "empty"):
        open_storage(uri)


def test_settings_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ANCHOR_OPT_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("ANCHOR_OPT_S3_REGION", "eu-west-1")
    monkeypatch.setenv("ANCHOR_OPT_S3_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("ANCHOR_OPT_S3_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("ANCHOR_OPT_S3_PATH_STYLE", "true")
    monkeypatch.setenv("ANCHOR_OPT_CACHE_DIR", str(tmp_path))
    s = StorageSettings.from_env()
    assert (s.endpoint_url, s.region, s.access_key_id, s.path_style) == (
        "http://minio:9000",
        "eu-west-1",
        "key",
        True,
    )
    assert s.secret_access_key.get_secret_value() == "hunter2" and "hunter2" not in repr(s)
    assert s.cache_dir == tmp_path and s.max_attempts == 5
    assert StorageSettings(cache_dir="/x").cache_dir == Path("/x")  # arguments win over the environment
    monkeypatch.delenv("ANCHOR_OPT_S3_SECRET_ACCESS_KEY")
    with pytest.raises(ValidationError, match="both"):
        StorageSettings()
