"""Both backends: one behaviour suite over a local folder and a real S3 endpoint (moto server).

Then what only LocalStorage (atomic replace, failed writes) or S3Storage (paging, retries) does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError

from trainer.contract.storage import (
    TMP_PREFIX,
    AlreadyExists,
    InvalidKey,
    LocalStorage,
    NotFound,
    PreconditionFailed,
    S3Storage,
    Storage,
    StorageError,
    open_storage,
)

BAD_KEYS = ["", "/etc/passwd", "../outside", "a/../../outside", "a//b", "./a", "a/..", f"a/{TMP_PREFIX}x"]


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Storage:
    """The same storage API on a folder and on a bucket prefix (keys stay relative to either root)."""
    if request.param == "local":
        return open_storage(str(tmp_path / "store"))
    bucket, settings = request.getfixturevalue("s3_bucket")
    return open_storage(f"s3://{bucket}/some/root", settings)


# --- the shared behaviour ---------------------------------------------------------------------


def test_round_trip_and_overwrite_replace_the_whole_object(store):
    store.write_bytes("jobs/abc/status.json", b'{"state": "QUEUED", "padding": "' + b"x" * 5000 + b'"}')
    store.write_bytes("jobs/abc/status.json", b'{"state": "RUNNING"}')
    assert store.read_bytes("jobs/abc/status.json") == b'{"state": "RUNNING"}'
    store.write_bytes("empty", b"")
    assert store.read_bytes("empty") == b""
    assert store.stat("jobs/abc/status.json").size == len(b'{"state": "RUNNING"}')


def test_missing_object_is_not_found_naming_its_uri(store):
    with pytest.raises(NotFound) as err:
        store.read_bytes("jobs/nope/status.json")
    assert str(err.value) == f"{store.uri}/jobs/nope/status.json: no such object"
    assert err.value.uri == store.uri_for("jobs/nope/status.json")
    assert isinstance(err.value, KeyError) and isinstance(err.value, StorageError)
    with pytest.raises(NotFound, match="nope"):
        store.stat("jobs/nope")
    with pytest.raises(NotFound, match="nope"):
        store.download("jobs/nope", Path("unused"))


def test_exists_and_delete(store):
    assert not store.exists("a/b.json")
    store.write_bytes("a/b.json", b"1")
    assert store.exists("a/b.json")
    assert not store.exists("a")  # a folder, or a key prefix, is not an object
    store.delete("a/b.json")
    store.delete("a/b.json")  # absent is fine
    store.delete("a")
    assert not store.exists("a/b.json")
    assert store.list() == []


def test_list_is_recursive_sorted_and_filtered_by_a_string_prefix(store):
    keys = ["jobs/b/x.json", "jobs/a/status.json", "top.json", "jobs/ab/job.json", "jobs/a/anchors/10.json"]
    for i, key in enumerate(keys):
        store.write_bytes(key, b"x" * (i + 1))
    listed = store.list()
    assert [o.key for o in listed] == sorted(keys)
    assert {o.key: o.size for o in listed} == {k: i + 1 for i, k in enumerate(keys)}
    assert all(o.etag for o in listed)
    assert [o.key for o in store.list("jobs/a/")] == ["jobs/a/anchors/10.json", "jobs/a/status.json"]
    assert [o.key for o in store.list("jobs/a")] == [
        "jobs/a/anchors/10.json",
        "jobs/a/status.json",
        "jobs/ab/job.json",
    ]
    assert store.list("nothing/") == []
    with pytest.raises(InvalidKey):
        store.list("../")


def test_folders_are_the_names_directly_under_a_folder(store):
    keys = ["jobs/b/job.json", "jobs/a/status.json", "jobs/a/anchors/10.json", "jobs/ab/job.json", "top.json"]
    for key in keys:
        store.write_bytes(key, b"x")
    assert store.folders("jobs/") == ["a", "ab", "b"]
    assert store.folders() == ["jobs"]
    assert store.folders("jobs/a/") == ["anchors"]
    assert store.folders("nothing/") == [] and store.folders("top.json/") == []
    for bad in ["jobs", "../", "jobs/../"]:
        with pytest.raises(InvalidKey, match="invalid"):
            store.folders(bad)


def test_etag_changes_when_the_object_does(store):
    store.write_bytes("k", b"one")
    first = store.stat("k").etag
    assert store.list()[0].etag == first
    store.write_bytes("k", b"three")
    assert store.stat("k").etag != first


def test_conditional_create_is_refused_the_second_time(store):
    store.write_bytes("jobs/abc/job.json", b"first", if_absent=True)
    with pytest.raises(AlreadyExists) as err:
        store.write_bytes("jobs/abc/job.json", b"second", if_absent=True)
    assert store.uri_for("jobs/abc/job.json") in str(err.value)
    assert store.read_bytes("jobs/abc/job.json") == b"first"
    assert [o.key for o in store.list()] == ["jobs/abc/job.json"]  # nothing left over
    store.delete("jobs/abc/job.json")
    store.write_bytes("jobs/abc/job.json", b"third", if_absent=True)
    assert store.read_bytes("jobs/abc/job.json") == b"third"


def test_a_conditional_write_replaces_only_the_version_it_read(store):
    store.write_bytes("jobs/abc/status.json", b'{"state": "RUNNING"}')
    got = store.read_versioned("jobs/abc/status.json")
    assert got.data == b'{"state": "RUNNING"}' and got.version
    store.write_bytes("jobs/abc/status.json", b'{"state": "CANCELLED"}', if_match=got.version)
    with pytest.raises(PreconditionFailed, match="changed since it was read") as err:
        store.write_bytes("jobs/abc/status.json", b'{"state": "RUNNING", "step": 4}', if_match=got.version)
    assert err.value.uri == store.uri_for("jobs/abc/status.json") and isinstance(err.value, StorageError)
    assert store.read_bytes("jobs/abc/status.json") == b'{"state": "CANCELLED"}'  # the refused write left it
    now = store.read_versioned("jobs/abc/status.json")
    assert now.version != got.version
    store.write_bytes("jobs/abc/status.json", b'{"state": "RUNNING"}', if_match=now.version)
    assert store.read_versioned("jobs/abc/status.json").version == got.version  # the version names the bytes
    store.delete("jobs/abc/status.json")
    with pytest.raises(PreconditionFailed):  # deleted since it was read is changed too
        store.write_bytes("jobs/abc/status.json", b"{}", if_match=got.version)
    with pytest.raises(NotFound):
        store.read_versioned("jobs/abc/status.json")
    assert store.list() == []  # nothing of the conditional writes is listed (the local lock file)
    assert isinstance(AlreadyExists("x"), PreconditionFailed)  # one family of refused conditions
    with pytest.raises(ValueError, match="exclude each other"):
        store.write_bytes("k", b"x", if_absent=True, if_match=got.version)


def _increment(store: Storage, key: str, times: int) -> int:
    """Adds 1 to the number stored at `key`, `times` times, each a read then a conditional write
    retried until it lands; returns how many writes were refused on the way."""
    refused = 0
    for _ in range(times):
        while True:
            got = store.read_versioned(key)
            try:
                store.write_bytes(key, b"%d" % (int(got.data) + 1), if_match=got.version)
                break
            except PreconditionFailed:
                refused += 1
    return refused


def test_racing_read_modify_write_cycles_never_lose_an_update(store):
    """The compare-and-swap is atomic: threads incrementing one counter lose no increment (with a
    plain read-then-write, most of them would be lost)."""
    store.write_bytes("counter", b"0")
    threads, times, refused = 6, 15, []
    workers = [
        threading.Thread(target=lambda: refused.append(_increment(store, "counter", times)))
        for _ in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert int(store.read_bytes("counter")) == threads * times
    assert sum(refused) > 0  # they did race


def test_local_compare_and_swap_holds_across_processes(tmp_path):
    """The lock is an flock on a file: processes (Ray workers, the service) exclude each other too."""
    store = LocalStorage(tmp_path)
    store.write_bytes("jobs/a/counter", b"0")
    code = (
        "import sys; from trainer.contract.storage import LocalStorage; "
        "from tests.trainer.contract.storage.test_backends import _increment; "
        "print(_increment(LocalStorage(sys.argv[1]), 'jobs/a/counter', 40))"
    )
    root = Path(__file__).resolve().parents[4]
    env = os.environ | {"PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, env=env)
        for _ in range(3)
    ]
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    assert int(store.read_bytes("jobs/a/counter")) == 120
    assert [o.key for o in store.list()] == ["jobs/a/counter"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_outside_the_root_are_rejected(store, key):
    with pytest.raises(InvalidKey, match="invalid key") as err:
        store.write_bytes(key, b"x")
    assert isinstance(err.value, ValueError)
    with pytest.raises(InvalidKey):
        store.read_bytes(key)
    assert store.list() == []


def test_download_replaces_the_destination_whole(store, tmp_path):
    store.write_bytes("data/img.jpg", b"\xff\xd8" + b"pixels" * 1000)
    dest = tmp_path / "out" / "deep" / "img.jpg"
    store.download("data/img.jpg", dest)
    assert dest.read_bytes() == b"\xff\xd8" + b"pixels" * 1000
    with pytest.raises(NotFound):
        store.download("data/missing.jpg", tmp_path / "out" / "missing.jpg")
    assert sorted(p.name for p in dest.parent.parent.rglob("*")) == ["deep", "img.jpg"]  # no temp files


def test_a_reader_racing_a_writer_only_ever_sees_whole_objects(store):
    """status.json is rewritten while the service polls it: every read is one version, entire."""
    versions = [bytes([i]) * 300_000 for i in range(1, 4)]
    store.write_bytes("jobs/a/status.json", versions[0])
    done = threading.Event()

    def writer():
        try:
            for i in range(30):
                store.write_bytes("jobs/a/status.json", versions[i % len(versions)])
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while not done.is_set() or reads < 5:
        assert store.read_bytes("jobs/a/status.json") in versions
        reads += 1
    thread.join()


# --- local folders ------------------------------------------------------------------------------


def test_local_reader_never_sees_a_partial_object(tmp_path, monkeypatch):
    store = LocalStorage(tmp_path)
    store.write_bytes("jobs/a/status.json", b"old")
    new = b"new" * 100_000
    real_replace, seen = os.replace, []

    def checking_replace(src, dst):
        # The moment before the new object becomes visible: complete in its temp file, invisible
        # to readers and to list, and the key still holds the old object.
        seen.append((Path(src).read_bytes() == new, store.read_bytes("jobs/a/status.json"), store.list()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", checking_replace)
    store.write_bytes("jobs/a/status.json", new)
    [(temp_complete, before, listed)] = seen
    assert temp_complete and before == b"old"
    assert [o.key for o in listed] == ["jobs/a/status.json"] and listed[0].size == 3
    assert store.read_bytes("jobs/a/status.json") == new


def test_local_failed_write_keeps_the_old_object(tmp_path, monkeypatch):
    store = LocalStorage(tmp_path)
    store.write_bytes("k.json", b"old")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StorageError, match=r"k\.json: write failed"):
        store.write_bytes("k.json", b"new")
    monkeypatch.undo()
    assert store.read_bytes("k.json") == b"old"
    assert os.listdir(tmp_path) == ["k.json"]


def test_local_keys_cannot_escape_the_root(tmp_path):
    store = LocalStorage(tmp_path / "root")
    with pytest.raises(InvalidKey, match=r"'\.\./escaped'"):
        store.write_bytes("../escaped", b"x")
    with pytest.raises(InvalidKey):
        store.write_bytes("/tmp/escaped", b"x")
    assert not (tmp_path / "escaped").exists()
    assert store.list() == []  # the root need not exist yet


# --- S3 -----------------------------------------------------------------------------------------


def test_s3_list_follows_pages(s3_bucket):
    bucket, settings = s3_bucket
    store = S3Storage(bucket, "p", settings, page_size=2)
    pages = []
    store.client.meta.events.register("after-call.s3.ListObjectsV2", lambda **kw: pages.append(1))
    for i in range(5):
        store.write_bytes(f"k{i}", b"x")
    assert [o.key for o in store.list()] == [f"k{i}" for i in range(5)]
    assert len(pages) == 3


def test_s3_folders_follow_pages_and_read_no_key_below_them(s3_bucket):
    bucket, settings = s3_bucket
    store = S3Storage(bucket, "p", settings, page_size=2)
    for i in range(5):
        for name in ("job.json", "status.json", "anchors/1.json"):
            store.write_bytes(f"jobs/j{i}/{name}", b"x")
    S3Storage(bucket, "", settings).write_bytes("other/jobs/x/job.json", b"x")  # outside the prefix
    pages = []
    events = store.client.meta.events
    events.register("after-call.s3.ListObjectsV2", lambda parsed, **kw: pages.append(parsed))
    assert store.folders("jobs/") == [f"j{i}" for i in range(5)]
    assert len(pages) == 3 and not any(page.get("Contents") for page in pages)


def test_s3_client_is_built_from_the_settings(s3_bucket):
    bucket, settings = s3_bucket
    store = S3Storage(bucket, "", settings.model_copy(update={"max_attempts": 7, "connect_timeout": 2.5}))
    config = store.client.meta.config
    assert config.retries == {"total_max_attempts": 7, "mode": "standard"}
    assert config.connect_timeout == 2.5 and config.read_timeout == 60.0
    assert config.s3 == {"addressing_style": "path"}
    assert store.client.meta.endpoint_url == settings.endpoint_url


def fail_first_sends(store: S3Storage, failures: int) -> list[str]:
    """Makes the first `failures` HTTP sends fail as if the endpoint were unreachable."""
    sends: list[str] = []

    def before_send(request, **kwargs):
        sends.append(request.method)
        if len(sends) <= failures:
            raise EndpointConnectionError(endpoint_url=request.url)
        return None  # send for real

    store.client.meta.events.register("before-send.s3.*", before_send)
    return sends


def test_s3_connection_errors_are_retried(s3_bucket):
    bucket, settings = s3_bucket
    store = S3Storage(bucket, "", settings)
    sends = fail_first_sends(store, failures=1)
    store.write_bytes("k", b"survived")
    assert sends == ["PUT", "PUT"]
    assert store.read_bytes("k") == b"survived"


def test_s3_conditional_writes_send_if_match_and_if_none_match(s3_bucket):
    """What reaches the endpoint: the ETag read, quoted, as If-Match; '*' as If-None-Match (moto
    5.2 enforces both, as S3 does)."""
    bucket, settings = s3_bucket
    store = S3Storage(bucket, "", settings)
    headers = []
    store.client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **kw: headers.append(
            {k: v if isinstance(v, str) else v.decode() for k, v in request.headers.items()}
        ),
    )
    store.write_bytes("k", b"one", if_absent=True)
    got = store.read_versioned("k")
    assert got.version == store.stat("k").etag  # S3's version is the object's ETag
    store.write_bytes("k", b"two", if_match=got.version)
    assert headers[0]["If-None-Match"] == "*" and "If-Match" not in headers[0]
    assert headers[1]["If-Match"] == f'"{got.version}"'
    with pytest.raises(PreconditionFailed):
        store.write_bytes("k", b"three", if_match=got.version)


def test_s3_gives_up_after_max_attempts(s3_bucket):
    bucket, settings = s3_bucket
    store = S3Storage(bucket, "", settings.model_copy(update={"max_attempts": 1}))
    fail_first_sends(store, failures=1)
    with pytest.raises(StorageError, match=rf"s3://{bucket}/k: write failed: Could not connect"):
        store.write_bytes("k", b"lost")
