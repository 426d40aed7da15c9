"""trainer.train.ray_resources: a job's resources checked against a fixed Ray, waited for (and said
so in status.json) on one that may free them, and given up on after the wait allowed."""

from __future__ import annotations

import threading
import time

import pytest
from ray.util.placement_group import placement_group, remove_placement_group

from tests.helpers import small_config
from tests.trainer.train.runs import submit
from trainer.contract.spec import RESOURCE_WAIT_ENV, JobState, Resources
from trainer.contract.storage import StorageSettings
from trainer.train.driver import run_job
from trainer.train.ray_resources import check_capacity, resource_wait_s
from trainer.train.ray_run import train_on_ray


def test_more_than_a_local_ray_has_is_an_error_naming_the_field(ray_cluster, tmp_path):
    too_many = Resources(workers=2, cpus_per_worker=2)
    with pytest.raises(ValueError, match=r"resources.cpus_per_worker=2 x resources.workers=2 needs 4 CPUs"):
        train_on_ray(small_config(), str(tmp_path), too_many, StorageSettings())
    with pytest.raises(
        ValueError, match=r"resources.gpus_per_worker=1 .* needs 1 GPUs; the Ray cluster has 0"
    ):
        check_capacity(Resources(gpus_per_worker=1, cpus_per_worker=1))
    assert not list(tmp_path.iterdir())  # refused before anything was written


ONE_WORKER = Resources(workers=1, cpus_per_worker=1, max_failures=0)


def _hold_every_cpu(ray):
    """A placement group holding both CPUs of the test's Ray: another job's workers, as it were."""
    held = placement_group([{"CPU": 2}])
    ray.get(held.ready(), timeout=60)
    return held


def _driver(job: str, uri: str, settings) -> tuple[threading.Thread, list]:
    """run_job in a thread as `anchor-opt run-job` runs it (the wait read from the environment there),
    so that a hang fails the test."""
    ended: list = []
    wait_s = resource_wait_s()
    thread = threading.Thread(
        target=lambda: ended.append(run_job(job, uri, settings, resource_wait_s=wait_s)), daemon=True
    )
    thread.start()
    return thread, ended


def test_a_job_waiting_for_resources_says_so_and_trains_once_they_are_free(ray_cluster, s3_store):
    """Ray Train used to wait silently: RUNNING at step 0, nothing saying why."""
    uri, settings, store = s3_store
    job = submit(store, "optim.epochs=1", resources=ONE_WORKER)
    held = _hold_every_cpu(ray_cluster)
    driver, ended = _driver(job, uri, settings)
    try:
        deadline = time.monotonic() + 120  # a bound against a hang, not a timing check
        while driver.is_alive() and time.monotonic() < deadline:
            if (status := store.status(job)).waiting:
                break
            time.sleep(0.3)
        assert status.waiting == "waiting for resources: 1 worker x 1 CPU; the cluster has 0 CPUs free"
        assert status.state == JobState.RUNNING and status.step == 0
    finally:
        remove_placement_group(held)
    driver.join(timeout=300)
    assert ended and ended[0].state == JobState.SUCCEEDED, ended and ended[0].error
    assert ended[0].waiting is None and store.status(job).waiting is None  # cleared once placed


def test_a_job_that_never_gets_its_resources_ends_failed_after_the_wait(ray_cluster, s3_store, monkeypatch):
    """It used to wait for ever, holding one of the service's running slots."""
    uri, settings, store = s3_store
    monkeypatch.setenv(RESOURCE_WAIT_ENV, "3")  # what the service passes (limits.resource_wait_s)
    job = submit(store, resources=ONE_WORKER)
    held = _hold_every_cpu(ray_cluster)
    driver, ended = _driver(job, uri, settings)
    try:
        driver.join(timeout=180)  # a bound against the old hang
    finally:
        remove_placement_group(held)
    assert ended, "the driver still waits for resources"
    status = ended[0]
    assert status.state == JobState.FAILED and status.finished_at and status.waiting is None
    assert status.error.startswith(
        "ResourcesUnavailable: gave up after 3 s waiting for resources: 1 worker x 1 CPU; "
        "the cluster has 0 CPUs free (ANCHOR_OPT_RESOURCE_WAIT_S)"
    ), status.error
    assert store.status(job).state == JobState.FAILED


def test_the_resource_wait_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(RESOURCE_WAIT_ENV, raising=False)
    assert resource_wait_s() == 1800
    monkeypatch.setenv(RESOURCE_WAIT_ENV, "90")
    assert resource_wait_s() == 90
    for bad in ("0", "-5", "soon", "inf", "nan"):
        monkeypatch.setenv(RESOURCE_WAIT_ENV, bad)
        with pytest.raises(ValueError, match=RESOURCE_WAIT_ENV):
            resource_wait_s()
