"""What a job needs against what the service can give it: limits, the embedded head's machine, a
cluster worker's memory; refused at submit with a 422 naming the field."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.app import create_app
from service.capacity import (
    GiB,
    MiB,
    check_capacity,
    detected_gpus,
    driver_env,
    estimate_memory,
    machine_memory,
    model_parameters,
)
from service.settings import JobLimits, ServiceSettings
from tests.helpers import REPO, client, serving
from trainer.config_files import load_config
from trainer.contract.spec import JobSpec

CLUSTER = "http://ray-head:8265"  # a named cluster: nothing here talks to it


def spec(**sections) -> JobSpec:
    return JobSpec.model_validate(sections)


def refused(job: JobSpec, settings: ServiceSettings) -> str:
    with pytest.raises(ValueError) as err:
        check_capacity(job, settings)
    return str(err.value)


@pytest.fixture
def api(tmp_path):
    """The embedded-head service (no ray_address) over HTTP; nothing is scheduled."""
    settings = ServiceSettings(
        store_uri=str(tmp_path / "store"), ray_num_cpus=2, limits=JobLimits(embedded_gpus=0)
    )
    with serving(create_app(settings, schedule=False)) as base:
        yield client(base)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # RUNNING at step 0 for ever on a CPU-only head, holding a slot: now a 422.
        (
            {"resources": {"workers": 1, "gpus_per_worker": 1, "cpus_per_worker": 1}},
            "resources.gpus_per_worker",
        ),
        ({"resources": {"workers": 256, "cpus_per_worker": 0.001}}, "resources.cpus_per_worker"),  # the floor
        ({"resources": {"workers": 3, "cpus_per_worker": 1}}, "resources.cpus_per_worker"),  # 3 of 2 CPUs
        ({"model": {"image_size": 2048}}, "model.image_size"),  # 25 GB of synthetic images
        ({"data": {"synthetic": {"num_train": 50_000}}}, "data.synthetic.num_train"),
        ({"optim": {"epochs": 5000}}, "optim.epochs"),
        ({"seed": 2**64}, "seed"),
    ],
)
def test_jobs_that_cannot_run_here_are_422_naming_the_field(api, body, field):
    r = api.post("/jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"{field}: "), r.json()["detail"]


def test_a_job_that_fits_is_accepted(api):
    r = api.post("/jobs", json={"resources": {"workers": 1, "cpus_per_worker": 1}})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("sections", "limits", "needle"),
    [
        ({"model": {"image_size": 1056}}, {}, "model.image_size: 1056 is over this service's limit of 1024 "
                                              "(limits.max_image_size)"),
        ({"optim": {"batch_size": 300}}, {}, "optim.batch_size: 300 is over"),
        ({"optim": {"epochs": 20}}, {"max_epochs": 10}, "optim.epochs: 20 is over this service's limit of"),
        ({"data": {"synthetic": {"num_train": 900, "num_val": 200}}}, {"max_synthetic_images": 1000},
         "data.synthetic.num_train: num_train + num_val = 1100 images is over this service's limit of 1000"),
        ({"resources": {"workers": 17}}, {}, "resources.workers: 17 is over this service's limit of 16"),
        ({"resources": {"cpus_per_worker": 64}}, {}, "resources.cpus_per_worker: 64 is over"),
        ({"resources": {"gpus_per_worker": 9}}, {}, "resources.gpus_per_worker: 9 is over"),
        ({"resources": {"workers": 4, "gpus_per_worker": 8}}, {},
         "resources.gpus_per_worker: 4 worker(s) x 8 GPUs is over this service's limit of 16 GPUs per job"),
        ({"model": {"image_size": 960, "multiscale": {"enabled": True}}}, {},
         "model.multiscale.max_size: 1056 is over this service's limit of 1024 (limits.max_image_size)"),
    ],
)  # fmt: skip
def test_operator_limits_apply_on_a_cluster_too(sections, limits, needle):
    settings = ServiceSettings(ray_address=CLUSTER, limits=JobLimits(**limits))
    assert refused(spec(**sections), settings).startswith(needle)


def test_a_named_cluster_leaves_cpus_and_gpus_within_the_limits_to_ray():
    """It may autoscale: 8 GPU workers are more than this machine has, and still accepted there."""
    check_capacity(spec(resources={"workers": 8, "gpus_per_worker": 1, "cpus_per_worker": 8}),
                   ServiceSettings(ray_address=CLUSTER))  # fmt: skip


def test_the_embedded_head_counts_its_machine():
    settings = ServiceSettings(ray_num_cpus=4, limits=JobLimits(embedded_gpus=2, embedded_memory_gb=64))
    check_capacity(spec(resources={"workers": 2, "gpus_per_worker": 1, "cpus_per_worker": 2}), settings)
    text = refused(spec(resources={"workers": 3, "gpus_per_worker": 1, "cpus_per_worker": 1}), settings)
    assert text.startswith("resources.gpus_per_worker: 3 worker(s) x 1 GPUs is more than the 2 GPUs")
    text = refused(spec(resources={"workers": 1, "gpus_per_worker": 1}), settings.model_copy(
        update={"limits": JobLimits(embedded_gpus=0)}))  # fmt: skip
    assert "no GPU on this service's local Ray: train on CPUs (0)" in text


def test_memory_is_refused_naming_what_drives_it():
    big = spec(model={"image_size": 2048}, data={"synthetic": {"num_train": 2000}})
    limits = JobLimits(max_image_size=2048)
    text = refused(big, ServiceSettings(limits=limits.model_copy(update={"embedded_memory_gb": 64})))
    # 2200 images of 2048 x 2048 x 3 bytes, rendered as three copies at once: 77 GiB (the 25 GB x 3).
    assert text.startswith("data.synthetic.num_train: the job needs about 100.2 GiB of memory per worker")
    assert "(synthetic images 77.3 GiB, activations 22.1 GiB, process 0.8 GiB)" in text
    assert "more than the 63.0 GiB this machine's local Ray can give a job" in text
    assert text.endswith("lower data.synthetic.num_train, data.synthetic.num_val, model.image_size")
    on_cluster = refused(big, ServiceSettings(ray_address=CLUSTER, limits=limits))
    assert "more than the 32 GiB a worker may use on this cluster (limits.worker_memory_gb)" in on_cluster
    wide = spec(model={"image_size": 1024}, optim={"batch_size": 256}, data={"synthetic": {"num_train": 300}})
    assert refused(wide, ServiceSettings(ray_address=CLUSTER)).startswith("optim.batch_size: the job needs")
    check_capacity(spec(), ServiceSettings(limits=JobLimits(embedded_memory_gb=4)))  # the defaults fit 4 GiB


def test_the_estimate_grows_with_what_a_spec_asks():
    base = estimate_memory(spec()).per_worker
    assert estimate_memory(spec(optim={"batch_size": 64})).per_worker > base
    assert estimate_memory(spec(model={"backbone": "darknet19"})).per_worker > base + 1.5 * GiB  # 51 M params
    assert estimate_memory(spec(data={"synthetic": {"num_train": 4000}})).per_worker > base
    multiscale = estimate_memory(spec(model={"multiscale": {"enabled": True}}))  # training at up to 224 px
    activations = {part.name: part for part in multiscale.parts}["activations"]
    assert multiscale.per_worker > base and "model.multiscale.max_size" in activations.fields
    real = spec(data={"source": "/data/coco", "workers": 8})
    assert estimate_memory(real).per_worker > estimate_memory(real.model_copy(
        update={"data": real.data.model_copy(update={"workers": 0})})).per_worker  # fmt: skip


def test_the_parameter_count_is_the_models():
    torch = pytest.importorskip("torch")
    from trainer.model.detector import Detector

    cases = [({}, 3), ({"model": {"backbone": "darknet19"}}, 80), ({"model": {"width": 0.5}}, 1),
             ({"model": {"width": 4}, "anchors": {"num": 9}}, 20),
             ({"model": {"levels": [8, 16, 32]}}, 3), ({"model": {"levels": [16, 32, 64], "width": 0.5}}, 2),
             ({"model": {"backbone": "darknet19", "levels": [8, 16, 32, 64]},
               "anchors": {"num": 2}}, 80)]  # fmt: skip
    for sections, classes in cases:
        job = spec(**sections)
        model = Detector(job.train_config(), torch.full((job.total_anchors, 2), 16.0), classes)
        assert model_parameters(job, classes) == sum(p.numel() for p in model.parameters()), sections


def test_the_estimate_bounds_a_measured_run(tmp_path):
    """One real `anchor-opt train` (in this process tree, no Ray: the estimate also counts a Ray
    worker's ~200 MiB more), its peak RSS from wait4: the estimate is above it, within 2x."""
    sets = ["model.image_size=256", "optim.batch_size=32", "data.synthetic.num_train=64",
            "data.synthetic.num_val=16", "optim.epochs=1", "eval.every_epochs=0"]  # fmt: skip
    cmd = [sys.executable, "-m", "trainer.cli", "train", "demo", "--out", str(tmp_path / "run"), "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([*cmd, *(a for s in sets for a in ("--set", s))], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read().decode()[-2000:]
    measured = usage.ru_maxrss * 1024  # kilobytes on Linux
    job = load_config(REPO / "trainer" / "configs" / "demo.yaml", sets, model=JobSpec)
    estimate = estimate_memory(job).per_worker
    assert measured < estimate < 2 * measured, (measured / MiB, estimate / MiB)


def test_gpus_are_counted_as_ray_would(tmp_path, monkeypatch):
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / name).touch()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert detected_gpus(tmp_path) == 2
    for visible, count in [("0", 1), ("0,1,2", 2), ("", 0), ("NoDevFiles", 0)]:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert detected_gpus(tmp_path) == count
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert detected_gpus(tmp_path / "missing") == 0
    assert 0 < machine_memory() < 1 << 50


def test_the_driver_gets_the_resource_wait():
    assert driver_env(ServiceSettings(limits=JobLimits(resource_wait_s=90))) == {
        "ANCHOR_OPT_RESOURCE_WAIT_S": "90.0"
    }
