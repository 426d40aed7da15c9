"""Which dataset URIs a job may name: allowed schemes, under allowed roots, no way out of them."""

from __future__ import annotations

import pytest

from service.policy import check_dataset_source
from service.settings import ServiceSettings


@pytest.fixture
def roots(tmp_path):
    data = tmp_path / "data"
    (data / "voc").mkdir(parents=True)
    (tmp_path / "private").mkdir()
    (data / "link-out").symlink_to(tmp_path / "private")
    return tmp_path, ServiceSettings(allowed_dataset_roots=[str(data), "s3://datasets/public"])


def test_synthetic_always(roots):
    check_dataset_source("synthetic", ServiceSettings())


@pytest.mark.parametrize("source", ["{data}/voc", "file://{data}/voc", "{data}", "s3://datasets/public/voc/2007",
                                    "s3://datasets/public"])  # fmt: skip
def test_inside_the_roots(roots, source):
    tmp, settings = roots
    check_dataset_source(source.format(data=tmp / "data"), settings)


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("http://example.com/voc.zip", "scheme 'http'"),
        ("https://example.com/voc", "scheme 'https'"),
        ("gs://bucket/voc", "scheme 'gs'"),
        ("{data}/../private", "'..'"),
        ("{data}/%2e%2e/private", "'..'"),
        ("file://{data}/voc/../../private", "'..'"),
        ("{tmp}/private", "outside the allowed dataset folders"),
        ("{data}/link-out", "outside the allowed dataset folders"),  # a symlink out of the root
        ("file:///etc/passwd", "outside"),
        ("data/voc", "relative path"),
        ("s3://datasets/public-but-not-really/voc", "outside the allowed dataset buckets"),
        ("s3://other-bucket/voc", "outside the allowed dataset buckets"),
        ("file://otherhost/srv/data", "absolute local path"),
        ("{data}/voc\x00/etc", "control characters"),
        ("{data}/voc\n", "control characters"),
    ],
)
def test_refused_naming_the_field(roots, source, needle):
    tmp, settings = roots
    with pytest.raises(ValueError) as err:
        check_dataset_source(source.format(data=tmp / "data", tmp=tmp), settings)
    assert str(err.value).startswith("data.source: ") and needle in str(err.value)


def test_without_roots_only_synthetic(tmp_path):
    with pytest.raises(ValueError, match="admits only 'synthetic'"):
        check_dataset_source(str(tmp_path), ServiceSettings())


def test_a_scheme_turned_off(roots):
    tmp, _ = roots
    settings = ServiceSettings(allowed_schemes=["s3"], allowed_dataset_roots=[str(tmp / "data")])
    with pytest.raises(ValueError, match="scheme 'file' is off"):
        check_dataset_source(str(tmp / "data" / "voc"), settings)


def test_the_local_ray_refuses_jobs_it_could_never_run():
    from service.policy import check_job_spec
    from trainer.jobs.spec import JobSpec

    small = JobSpec.model_validate({"resources": {"workers": 2, "cpus_per_worker": 1}})
    check_job_spec(small, ServiceSettings(ray_num_cpus=2))
    big = JobSpec.model_validate({"resources": {"workers": 2, "cpus_per_worker": 2}})
    with pytest.raises(
        ValueError, match=r"resources.cpus_per_worker: 2 worker\(s\) x 2 CPUs .* at most 1 per"
    ):
        check_job_spec(big, ServiceSettings(ray_num_cpus=2))
    gpu = JobSpec.model_validate({"resources": {"gpus_per_worker": 1, "cpus_per_worker": 1}})
    with pytest.raises(
        ValueError, match=r"^resources.gpus_per_worker: .* no GPU on this service's local Ray"
    ):
        check_job_spec(gpu, ServiceSettings(ray_num_cpus=2, limits={"embedded_gpus": 0}))
    check_job_spec(big, ServiceSettings(ray_num_cpus=2, ray_address="http://ray-head:8265"))  # may autoscale
