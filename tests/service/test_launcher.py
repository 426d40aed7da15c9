"""The launcher against a real Ray head started by LocalRayHead: submit (idempotent by id), state,
logs, stop, and what an unreachable job server looks like."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time

import pytest

from service.launcher import LocalRayHead, RayJobs, RayUnavailable

from .conftest import free_port

HANG_S = 120  # a bound against a hang, not a timing


@pytest.fixture(scope="module")
def head():
    temp = tempfile.mkdtemp(prefix="rlch-", dir="/tmp")  # short: Ray puts sockets under it
    launcher = LocalRayHead()
    address = launcher.ensure(temp_dir=temp, num_cpus=1, dashboard_port=free_port())
    assert launcher.started
    yield address, temp
    assert LocalRayHead.stop(temp)
    shutil.rmtree(temp, ignore_errors=True)


def ended(jobs: RayJobs, job_id: str) -> str:
    deadline = time.monotonic() + HANG_S
    while (state := jobs.state(job_id).status) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, f"Ray job {job_id} stuck in {state}"
        time.sleep(0.2)
    return state


def test_a_second_ensure_reuses_the_running_head(head):
    address, temp = head
    again = LocalRayHead()
    assert again.ensure(temp_dir=temp, dashboard_port=int(address.rsplit(":", 1)[1])) == address
    assert not again.started


def test_submit_runs_once_per_id_and_keeps_the_logs(head):
    jobs = RayJobs(head[0])
    assert jobs.ping()
    entry = [sys.executable, "-c", "import os; print('hello from', os.environ['GREETING'])"]
    jobs.submit("echo-1", entry, env={"GREETING": "the launcher"})
    jobs.submit("echo-1", entry, env={"GREETING": "the launcher"})  # a retry: no second job
    assert ended(jobs, "echo-1") == "SUCCEEDED"
    assert "hello from the launcher" in jobs.logs("echo-1")
    assert jobs.logs("echo-1", tail=1).count("\n") <= 1
    with pytest.raises(RuntimeError, match="another entrypoint"):
        jobs.submit("echo-1", [sys.executable, "-c", "print('other')"])
    assert not jobs.stop("echo-1")  # ended already


def test_stop_a_running_job(head):
    jobs = RayJobs(head[0])
    jobs.submit("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])
    assert jobs.stop("sleeper")
    assert ended(jobs, "sleeper") == "STOPPED"


def test_unknown_jobs(head):
    jobs = RayJobs(head[0])
    assert jobs.state("no-such-job") is None and jobs.logs("no-such-job") is None
    assert jobs.stop("no-such-job") is False


def test_an_unreachable_job_server():
    jobs = RayJobs(f"http://127.0.0.1:{free_port()}")
    assert not jobs.ping(timeout_s=1)
    with pytest.raises(RayUnavailable, match="unreachable"):
        jobs.state("any")
