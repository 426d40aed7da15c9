"""The service's view of the store (service.records.Records) on a local folder and a bucket of the moto
server: an index of every job for listings, full records cached within a byte budget, and nothing
kept of a job that is gone."""

from __future__ import annotations

import pytest

from service.records import JobEntry, Records, SizedLRU
from service.views import page, public
from trainer.contract.documents import JobRecord
from trainer.contract.layout import JOB_KEY
from trainer.contract.spec import JobSpec
from trainer.contract.storage import LocalStorage, open_storage
from trainer.contract.store import JobStore

SPEC = JobSpec.model_validate({"name": "cached", "optim": {"epochs": 1}})


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> JobStore:
    if request.param == "local":
        return JobStore(LocalStorage(tmp_path / "store"))
    bucket, settings = request.getfixturevalue("s3_bucket")
    return JobStore(open_storage(f"s3://{bucket}/store", settings))


def _padded(store: JobStore, n: int, pad: int) -> list[str]:
    """`n` jobs whose records carry `pad` bytes of notes each (records keep fields added later), as
    a spec with long strings would."""
    ids = []
    for i in range(n):
        record = JobRecord(id=f"padded-{i:03d}", spec=SPEC, submitted_at=1000.0 + i, submitted_by="team-a")
        doc = record.model_dump() | {"notes": "x" * pad}
        store.storage.write_bytes(
            store.key(record.id, JOB_KEY), JobRecord.model_validate(doc).model_dump_json().encode()
        )
        ids.append(record.id)
    return ids


def test_every_job_is_indexed_and_full_records_stay_within_their_budget(store):
    """Finding 6's "bound the caches": 150 jobs of ~100 KB records (the reported 130 MB came from
    keeping every record and view for ever). Listing pages through all of them; the full records
    cached stay under the budget, and one dropped from it is read again when asked for."""
    ids = _padded(store, 150, 100_000)
    records = Records(store, record_bytes=1_000_000, view_bytes=1_000_000)
    records.refresh()
    assert [e.id for e in records.newest_first()] == ids[::-1]
    assert records.newest_first()[0] == JobEntry(ids[-1], 1149.0, "team-a", "cached")
    assert records._full.bytes <= 1_000_000 and 0 < len(records._full) < 11
    listed = page(records, "team-a", None, None, 500)
    assert [j.id for j in listed.items] == ids[::-1] and {j.state for j in listed.items} == {"QUEUED"}
    first = records.get(ids[0])  # long since dropped from the cache: read again
    assert first.id == ids[0] and first.model_extra["notes"] == "x" * 100_000
    for job in ids:
        public(store, records, records.get(job))
    assert records._full.bytes <= 1_000_000 and records.views.bytes <= 1_000_000


def test_a_job_deleted_from_the_store_is_forgotten(store):
    kept, gone = (store.create(SPEC, submitted_by="team-a").id for _ in range(2))
    records = Records(store)
    records.refresh()
    assert records.get(gone) is not None
    for o in store.storage.list(store.key(gone)):
        store.storage.delete(o.key)
    if isinstance(store.storage, LocalStorage):
        (store.storage.root / store.key(gone)).rmdir()
    records.refresh()
    assert [e.id for e in records.newest_first()] == [kept]
    assert records.get(gone) is None and records._full.get(gone) is None


def test_a_job_submitted_while_the_store_is_listed_is_kept(store):
    """The listing a refresh reads can predate a submit this service just recorded (`add`): that
    job is not "gone"."""
    records = Records(store)
    listing = store.job_ids

    def listed_then_submitted() -> list[str]:
        before = listing()
        records.add(store.create(SPEC, submitted_by="team-a"))  # a POST between listing and dropping
        return before

    store.job_ids = listed_then_submitted
    records.refresh()
    assert len(records.newest_first()) == 1


def test_the_lru_drops_the_least_recently_used_first():
    lru: SizedLRU[str, int] = SizedLRU(max_bytes=10)
    lru.put("a", 1, 4)
    lru.put("b", 2, 4)
    assert lru.get("a") == 1  # now b is the least recently used
    lru.put("c", 3, 4)
    assert lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3 and lru.bytes == 8
    lru.put("huge", 4, 11)  # larger than the whole budget: not kept, nothing else dropped for it
    assert lru.get("huge") is None and len(lru) == 2
    lru.pop("a")
    assert lru.bytes == 4
