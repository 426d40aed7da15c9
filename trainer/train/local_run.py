"""A whole training run in this process: what `anchor-opt train` (without `--workers`) calls.

`train(cfg, out_dir)` runs trainer.train.loop's loop alone (rank 0 of 1) and writes into `out_dir` (a
folder, an `s3://bucket/prefix`, or any trainer.contract.storage Storage) the same objects a cluster job
writes under its storage prefix (trainer.contract.writer), ending with status.json SUCCEEDED or FAILED.
It trains on the config's `device` (trainer.train.device: auto is the GPU when there is one).
"""

from __future__ import annotations

import time
from pathlib import Path

from trainer.config import TrainConfig
from trainer.contract.layout import CHECKPOINT_KEY
from trainer.contract.spec import JobState
from trainer.contract.storage import Storage, StorageSettings
from trainer.contract.writer import RunWriter
from trainer.train.device import resolve_device
from trainer.train.loop import ProgressFn, Session, run_loop

__all__ = ["ProgressFn", "train"]


def train(
    cfg: TrainConfig,
    out_dir: str | Path | Storage,
    resume: bool = False,
    progress: ProgressFn | None = None,
    settings: StorageSettings | None = None,
) -> dict:
    """Trains on the configured dataset and writes every output into `out_dir`. Returns result.json.

    With `resume`, continues exactly from `out_dir`'s checkpoint when there is one; otherwise any
    earlier outputs in `out_dir` are replaced. `settings`: the storage settings the caller read, for
    an s3:// `out_dir` or data source (None: neither is on S3).
    """
    device = resolve_device(cfg.device)  # before anything is written: a device not here is a ValueError
    writer = RunWriter(out_dir, settings)
    if not (resume and writer.exists(CHECKPOINT_KEY)):
        writer.clear()
    elif (before := writer.status()) and before.state.terminal:  # resuming an interrupted run
        writer.update_status(reopen=True, state=JobState.RUNNING, error=None, finished_at=None)
    try:
        result = run_loop(cfg, writer, Session(writer, resume=resume, device=device), progress)
    except KeyboardInterrupt:
        writer.update_status(state=JobState.CANCELLED, error="interrupted", finished_at=time.time())
        raise
    except Exception as exc:
        writer.update_status(
            state=JobState.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=time.time()
        )
        raise
    writer.update_status(state=JobState.SUCCEEDED, eta_s=0.0, finished_at=time.time())
    return result
