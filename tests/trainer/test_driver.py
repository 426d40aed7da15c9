"""The job driver's parts that need no Ray (the Ray runs are in test_distributed.py)."""

import subprocess
import sys

from trainer.driver import failure_message


def test_the_job_contract_and_the_driver_import_without_torch_or_ray():
    """The control plane reads and writes jobs with these modules and must stay torch-free."""
    code = (
        "import sys, trainer.jobs.store, trainer.jobs.schema, trainer.outputs, trainer.driver; "
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
    from trainer.driver import train_to_end
    from trainer.jobs.spec import JobState, Resources
    from trainer.outputs import RunWriter
    from trainer.storage import StorageSettings

    writer = RunWriter(tmp_path)
    writer.update_status(state=JobState.CANCELLED, error="cancelled by request")
    # Training would need torch and Ray; a terminal run returns before either is imported.
    ended = train_to_end(writer, TrainConfig(), Resources(), StorageSettings())
    assert ended.state is JobState.CANCELLED and ended.error == "cancelled by request"
    assert [k for k in writer.keys("")] == ["status.json"]
