"""trainer.contract.storage.mirror: fetch_to_cache against a real S3 endpoint (moto server)."""

from __future__ import annotations

import json

import pytest

from trainer.contract.storage import (
    MANIFEST_NAME,
    InvalidKey,
    NotFound,
    S3Storage,
    StorageSettings,
    fetch_to_cache,
    s3_client,
)


def put_objects(bucket: str, settings: StorageSettings, objects: dict[str, bytes]) -> None:
    """Objects written straight through boto3, the way another tool would fill a bucket."""
    client = s3_client(settings)
    for key, data in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)


DATASET = {
    "voc/": b"",  # a console's folder marker
    "voc/pascal_train2007.json": b'{"images": []}',
    "voc/JPEGImages/000001.jpg": b"jpeg-1" * 100,
    "voc/JPEGImages/000002.jpg": b"jpeg-2" * 100,
    "vocabulary.txt": b"not under voc/",
}


def test_fetch_mirrors_once_then_only_what_changed(s3_bucket):
    bucket, settings = s3_bucket
    put_objects(bucket, settings, DATASET)
    calls = []
    first = fetch_to_cache(f"s3://{bucket}/voc", settings, progress=lambda d, t: calls.append((d, t)))
    mirror = settings.cache_dir / "s3" / bucket
    assert first.local_path == mirror / "voc"
    assert (first.downloaded, first.cached, first.bytes_downloaded) == (3, 0, 14 + 600 + 600)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    files = sorted(p for p in first.local_path.rglob("*") if p.is_file())
    assert [p.relative_to(mirror).as_posix() for p in files] == sorted(k for k in DATASET if k[-1] != "/")[:3]
    assert all(p.read_bytes() == DATASET[p.relative_to(mirror).as_posix()] for p in files)
    assert not (mirror / "vocabulary.txt").exists()
    mtimes = {p: p.stat().st_mtime_ns for p in files}

    second = fetch_to_cache(f"s3://{bucket}/voc/", settings)
    assert (second.downloaded, second.cached, second.bytes_downloaded) == (0, 3, 0)
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes

    put_objects(bucket, settings, {"voc/JPEGImages/000002.jpg": b"changed"})
    third = fetch_to_cache(f"s3://{bucket}/voc", settings)
    assert (third.downloaded, third.cached, third.bytes_downloaded) == (1, 2, 7)
    changed = mirror / "voc/JPEGImages/000002.jpg"
    assert changed.read_bytes() == b"changed"
    assert {p: p.stat().st_mtime_ns for p in files if p != changed} == {
        p: t for p, t in mtimes.items() if p != changed
    }
    manifest = json.loads((mirror / MANIFEST_NAME).read_text())["etags"]
    assert sorted(manifest) == [p.relative_to(mirror).as_posix() for p in files]


def test_fetch_a_single_object_returns_its_file(s3_bucket):
    bucket, settings = s3_bucket
    put_objects(bucket, settings, DATASET)
    got = fetch_to_cache(f"s3://{bucket}/voc/pascal_train2007.json", settings)
    assert got.local_path == settings.cache_dir / "s3" / bucket / "voc" / "pascal_train2007.json"
    assert got.local_path.read_bytes() == b'{"images": []}' and got.downloaded == 1
    assert fetch_to_cache(f"s3://{bucket}/voc/pascal_train2007.json", settings).cached == 1


def test_fetch_removes_files_whose_objects_are_gone_and_survives_a_bad_manifest(s3_bucket):
    bucket, settings = s3_bucket
    put_objects(bucket, settings, DATASET)
    fetch_to_cache(f"s3://{bucket}/voc", settings)
    S3Storage(bucket, "", settings).delete("voc/JPEGImages/000001.jpg")
    mirror = settings.cache_dir / "s3" / bucket
    again = fetch_to_cache(f"s3://{bucket}/voc", settings)
    assert (again.downloaded, again.cached) == (0, 2)
    assert not (mirror / "voc/JPEGImages/000001.jpg").exists()
    (mirror / MANIFEST_NAME).write_text("{not json")
    assert fetch_to_cache(f"s3://{bucket}/voc", settings).downloaded == 2


def test_fetch_nothing_under_the_uri_is_not_found(s3_bucket):
    bucket, settings = s3_bucket
    put_objects(bucket, settings, DATASET)
    for uri in (f"s3://{bucket}/empty/", f"s3://{bucket}/vo", f"s3://{bucket}/voc/JPEG"):
        with pytest.raises(NotFound, match=f"{uri}: no objects under this URI"):
            fetch_to_cache(uri, settings)


def test_fetch_refuses_keys_that_would_escape_the_mirror(s3_bucket):
    bucket, settings = s3_bucket
    put_objects(bucket, settings, {"voc/a/../../../../escaped": b"x"})
    with pytest.raises(InvalidKey, match="invalid key"):
        fetch_to_cache(f"s3://{bucket}/voc", settings)
    assert not list(settings.cache_dir.parent.rglob("escaped"))


def test_fetch_returns_local_paths_as_they_are(tmp_path):
    (tmp_path / "data").mkdir()
    settings = StorageSettings(cache_dir=tmp_path / "cache")
    for uri in (str(tmp_path / "data"), (tmp_path / "data").as_uri()):
        got = fetch_to_cache(uri, settings)
        assert (got.local_path, got.downloaded, got.cached) == (tmp_path / "data", 0, 0)
    with pytest.raises(NotFound, match="missing: no such file or folder"):
        fetch_to_cache(str(tmp_path / "missing"), settings)
    with pytest.raises(ValueError, match="unsupported"):
        fetch_to_cache("http://example.com/data", settings)
    assert not (tmp_path / "cache").exists()
