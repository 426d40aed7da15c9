"""The job driver's parts that need no Ray (the Ray runs are in test_distributed.py)."""

import subprocess
import sys

from trainer.contract.storage import StorageSettings
from trainer.train.driver import failure_message


def test_the_job_contract_and_the_driver_import_without_torch_or_ray():
    """The control plane reads and writes jobs with these modules and must stay torch-free."""
    code = (
        "import sys, trainer.contract.store, trainer.contract.documents, trainer.contract.writer, "
        "trainer.train.driver; "
        "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_failure_message_names_each_rank():
    class Group(Exception):
        worker_failures = {1: RuntimeError("Traceback ...\n  line\nValueError: bad box"), 0: OSError("gone")}

    message = failure_message(Group("x"))
    assert message == "2 worker(s) failed: rank 0: gone; rank 1: ValueError: bad box"
    assert failure_message(KeyError("k")) == "KeyError: 'k'"
    long = failure_message(ValueError("y" * 5000))
    assert long.startswith("...") and len(long) == 4003


def test_a_run_cancelled_before_its_driver_started_is_not_trained(tmp_path):
    from trainer.config import TrainConfig
    from trainer.contract.spec import JobState, Resources
    from trainer.contract.writer import RunWriter
    from trainer.train.driver import train_to_end

    writer = RunWriter(tmp_path)
    writer.update_status(state=JobState.CANCELLED, error="cancelled by request")
    # Training would need torch and Ray; a terminal run returns before either is imported.
    ended = train_to_end(writer, TrainConfig(), Resources(), StorageSettings())
    assert ended.state is JobState.CANCELLED and ended.error == "cancelled by request"
    assert [k for k in writer.keys("")] == ["status.json"]


def test_every_restart_is_counted_even_of_attempts_that_died_before_reporting(ray_cluster, tmp_path):
    """Finding 10: Ray Train restarts a worker group that died, `resources.max_failures` times.
    Here rank 0 dies as each of the first two attempts starts, before it reports anything (as bad
    data or a store it cannot write would make it); the third runs to the end. Counting only
    attempts that had reported progress said `attempt: 0`."""
    from tests.helpers import small_config
    from trainer.contract.spec import JobSpec, JobState
    from trainer.contract.storage import LocalStorage
    from trainer.contract.store import JobStore
    from trainer.train.driver import run_job

    store = JobStore(LocalStorage(tmp_path / "store"))
    resources = {"workers": 1, "cpus_per_worker": 1, "max_failures": 2}
    spec = JobSpec.model_validate(small_config("optim.epochs=1").model_dump() | {"resources": resources})
    job = store.create(spec).id
    # A second after the training function starts, before it reads data or reports: dying in the same
    # instant races Ray Train 2.60's launch of the function, and loses the run
    # (docs/notes/2026-11-24-ray-train-2.60.md).
    fault = {"rank": 0, "step": 0, "marker": str(tmp_path / "died"), "times": 2, "delay_s": 1.0}
    status = run_job(job, store.storage.uri, StorageSettings(), fault=fault)
    assert status.state is JobState.SUCCEEDED, status.error
    assert status.attempt == 2 and store.status(job).attempt == 2
    assert (tmp_path / "died").exists() and (tmp_path / "died.1").exists()  # both attempts did die
    assert status.starts == 3
