"""How status.json changes: one compare-and-swap transition that every writer of a status goes through.

    transition(storage, "jobs/<id>/status.json", {"step": 40, "eta_s": 12.5})        # a worker's progress
    transition(storage, key, {"state": JobState.CANCELLED, "error": "cancelled by request"})
    transition(storage, key, lambda s: None if s.launched_at else {"launched_at": now})

The trainer's rank 0 (trainer.contract.writer.RunWriter.update_status), its driver, and the service
(trainer.contract.store.JobStore.update_status: launch marks, cancel, the end of a job Ray reports dead)
all write a status this way, and nothing else rewrites one. Each call reads the status with its
version, applies the change to what it read, and writes only if the status is still that version
(S3 If-Match, a compare-and-swap on a folder); when another writer got in first it reads again and
reapplies the change to the new status. So no write is ever made on a stale read, and an ended state
(SUCCEEDED, FAILED, CANCELLED) is final: a change to an ended status is not applied, and the call
returns the ended status, unless `reopen` (a run resumed on purpose). DESIGN.md, "Storage layout".
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from trainer.contract.documents import JobStatus
from trainer.contract.spec import JobState
from trainer.contract.storage import NotFound, PreconditionFailed, Storage, StorageError

# A change: the fields to set, or a function of the status read that returns them (None or {}: no write).
Change = Mapping[str, Any] | Callable[[JobStatus], Mapping[str, Any] | None]

# How long to keep retrying a status that keeps changing under us before giving up. Writers of one
# status are a handful (rank 0, its driver, the scheduler of each replica), each writing at most
# every few seconds, so a conflict is rare and the second attempt nearly always lands; this bounds
# a pathological storm (two writers back to back for seconds: the loser may lose ~20 in a row).
GIVE_UP_S = 30.0
IMMEDIATE_RETRIES = 5  # conflicts retried at once, before jittered waits (for 409-answering endpoints)


def transition(
    storage: Storage,
    key: str,
    change: Change,
    *,
    reopen: bool = False,
    initial: Callable[[], JobStatus] | None = None,
) -> JobStatus:
    """Applies `change` to the status at `key` atomically; returns the status now stored.

    `initial` is the status an absent status.json stands for (default: QUEUED, now); it may raise (a
    job that no longer exists). The change is validated against the schema (a writer cannot drift
    from what readers parse) and stamps `updated_at`. A status that has ended is returned unchanged
    unless `reopen`. StorageError if the status kept changing under us for GIVE_UP_S.
    """
    deadline, refused = time.monotonic() + GIVE_UP_S, 0
    while True:
        try:
            got = storage.read_versioned(key)
            current, version = JobStatus.model_validate_json(got.data), got.version
        except NotFound:
            current = initial() if initial else JobStatus(state=JobState.QUEUED, updated_at=time.time())
            version = None
        if current.state.terminal and not reopen:
            return current
        changes = change(current) if callable(change) else change
        if not changes:
            return current
        doc = JobStatus.model_validate(current.model_dump() | dict(changes) | {"updated_at": time.time()})
        data = doc.model_dump_json(indent=1).encode()
        try:
            if version is None:
                storage.write_bytes(key, data, if_absent=True)
            else:
                storage.write_bytes(key, data, if_match=version)
            return doc
        except PreconditionFailed:  # another writer got in between: read its status and apply again
            refused += 1
            if time.monotonic() > deadline:
                uri = storage.uri_for(key)
                raise StorageError(
                    f"{uri}: kept changing for {GIVE_UP_S:.0f} s ({refused} conditional writes refused); "
                    "not written",
                    uri,
                ) from None
            # At once: that write has landed, so reading now races the others on equal terms.
            # Jittered waits only after a few losses, for endpoints that refuse concurrent
            # conditional writes (S3's 409) until the one in flight is done.
            if refused > IMMEDIATE_RETRIES:
                time.sleep(random.uniform(0, min(0.05, 0.001 * refused)))
