"""Which dataset URIs a job may name: allowed schemes, under allowed roots, no way out of them."""

from __future__ import annotations

from pathlib import Path

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
    from trainer.contract.spec import JobSpec

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


# --- splits, the admitted root, per-tenant roots, one URI parser -------------------------------------


def dataset_spec(source: str, **data):
    from trainer.contract.spec import JobSpec

    return JobSpec.model_validate({"data": {"source": source, **data}})


@pytest.mark.parametrize(
    ("field", "split", "needle"),
    [
        ("train_split", "/other/tenant/annotations/instances_train", "relative to data.source"),
        ("val_split", "../../other/tenant/val", "'..'"),
        ("train_split", "trainval+../../theirs/train", "'..'"),
        ("train_split", "VOC2007/%2e%2e/%2e%2e/x", "'..'"),
        ("val_split", "file:///etc", "relative to data.source"),
        ("val_split", "C:\\data", "relative to data.source"),
        ("train_split", "train\n", "control characters"),
    ],
)
def test_splits_that_leave_the_source_are_refused(roots, field, split, needle):
    """The reporter's job: source under an allowed root, train_split at another tenant's annotations."""
    from service.policy import check_job_spec

    tmp, settings = roots
    with pytest.raises(ValueError) as err:
        check_job_spec(dataset_spec(str(tmp / "data" / "voc"), **{field: split}), settings)
    assert str(err.value).startswith(f"data.{field}: ") and needle in str(err.value)


def test_an_admitted_spec_runs_confined_to_its_root(roots):
    from service.policy import check_job_spec

    tmp, settings = roots
    source = str(tmp / "data" / "voc")
    admitted = check_job_spec(dataset_spec(source, train_split="VOC2007/trainval+VOC2012/trainval"), settings)
    assert admitted.data.allowed_root == str(tmp / "data") and admitted.data.source == source
    narrower = check_job_spec(dataset_spec(source, allowed_root=source), settings)
    assert narrower.data.allowed_root == source  # the caller may confine it further, never wider
    for bad, needle in (
        (str(tmp / "private"), "outside the allowed"),
        (str(tmp / "data" / "x"), "does not contain"),
    ):
        (tmp / "data" / "x").mkdir(exist_ok=True)
        with pytest.raises(ValueError, match=f"^data.allowed_root: .*{needle}"):
            check_job_spec(dataset_spec(source, allowed_root=bad), settings)
    s3 = check_job_spec(dataset_spec("s3://datasets/public/voc"), settings)
    assert s3.data.allowed_root == "s3://datasets/public"
    assert check_job_spec(dataset_spec("synthetic"), settings).data.allowed_root is None


def test_a_tenants_own_roots_replace_the_services(roots):
    from service.policy import check_job_spec

    tmp, settings = roots
    (tmp / "data" / "team-a").mkdir()
    mine = [str(tmp / "data" / "team-a")]
    assert (
        check_job_spec(dataset_spec(str(tmp / "data" / "team-a")), settings, mine).data.allowed_root
        == mine[0]
    )
    with pytest.raises(ValueError, match="outside the allowed dataset folders"):
        check_job_spec(dataset_spec(str(tmp / "data" / "voc")), settings, mine)
    with pytest.raises(ValueError, match="admits only 'synthetic'"):
        check_job_spec(dataset_spec(str(tmp / "data" / "voc")), settings, [])


def test_the_s3_mirror_cache_is_never_a_dataset(tmp_path):
    from trainer.contract.storage import StorageSettings

    cache = tmp_path / "cache"
    (cache / "s3" / "bucket" / "theirs").mkdir(parents=True)
    settings = ServiceSettings(allowed_dataset_roots=[str(tmp_path)], s3=StorageSettings(cache_dir=cache))
    with pytest.raises(ValueError, match="^data.source: .*inside the S3 mirror cache"):
        check_dataset_source(str(cache / "s3" / "bucket" / "theirs"), settings)


@pytest.mark.parametrize(
    ("uri", "opened"),
    [
        ("{data}/voc", "{data}/voc"),
        ("file://{data}/voc", "{data}/voc"),
        ("FILE://{data}/voc", "{data}/voc"),  # an upper-case scheme
        ("file://localhost{data}/voc", "{data}/voc"),  # was opened as the relative path localhost/...
        ("file://{data}/a%20b", "{data}/a b"),  # was checked as 'a b' and opened as 'a%20b'
        ("{data}/voc/", "{data}/voc"),  # a trailing slash
        ("S3://datasets/public/voc", "s3://datasets/public/voc"),  # was admitted, then refused by the reader
        ("s3://datasets/public/voc/", "s3://datasets/public/voc"),
    ],
)
def test_what_the_policy_admits_is_what_the_reader_opens(roots, tmp_path, uri, opened):
    """One parser (trainer.contract.storage.parse_uri) for the admission check and the reader."""
    from trainer.contract.storage import StorageSettings, mirror_path
    from trainer.data.sources import local_root

    tmp, settings = roots
    (tmp / "data" / "a b").mkdir()
    uri, opened = uri.format(data=tmp / "data"), opened.format(data=tmp / "data")
    assert check_dataset_source(uri, settings) is not None
    if opened.startswith("s3://"):
        storage = StorageSettings(cache_dir=tmp_path / "cache")
        assert (
            mirror_path(uri, storage)
            == mirror_path(opened, storage)
            == tmp_path / "cache/s3/datasets/public/voc"
        )
    else:
        assert local_root(uri) == Path(opened)


@pytest.mark.parametrize(
    "uri",
    ["file:relative/voc", "file://otherhost{data}/voc", "s3://datasets/public//voc", "s3:///voc",
     "s3://datasets/public/./voc", "{data}/voc/../../private", "s3://datasets/public/%2e%2e/x", ""],
)  # fmt: skip
def test_uris_the_reader_would_open_differently_are_refused(roots, uri):
    tmp, settings = roots
    with pytest.raises(ValueError, match="^data.source: "):
        check_dataset_source(uri.format(data=tmp / "data"), settings)


# --- model.pretrained: admitted by data.source's rules ---------------------------------------------------


def pretrained_spec(pretrained: str, source: str = "synthetic", **model):
    from trainer.contract.spec import JobSpec

    return JobSpec.model_validate(
        {"data": {"source": source}, "model": {"backbone": "darknet19", "pretrained": pretrained, **model}}
    )


def test_pretrained_weights_run_confined_to_the_root_that_admitted_them(roots):
    from service.policy import check_job_spec

    tmp, settings = roots
    (tmp / "data" / "weights").mkdir()
    local = str(tmp / "data" / "weights" / "darknet19_448.conv.23")
    admitted = check_job_spec(pretrained_spec(local), settings)
    assert admitted.model.pretrained == local and admitted.model.pretrained_allowed_root == str(tmp / "data")
    s3 = check_job_spec(pretrained_spec("s3://datasets/public/jobs/abc/artifacts/weights.pt"), settings)
    assert s3.model.pretrained_allowed_root == "s3://datasets/public"
    narrower = str(tmp / "data" / "weights")
    assert (
        check_job_spec(
            pretrained_spec(local, pretrained_allowed_root=narrower), settings
        ).model.pretrained_allowed_root
        == narrower
    )
    assert check_job_spec(dataset_spec("synthetic"), settings).model.pretrained_allowed_root is None


@pytest.mark.parametrize(
    ("pretrained", "needle"),
    [
        ("https://pjreddie.com/media/files/darknet19_448.conv.23", "scheme 'https'"),
        ("{tmp}/private/w.pt", "outside the allowed dataset folders"),
        ("{data}/link-out/w.pt", "outside the allowed dataset folders"),  # a symlink out of the root
        ("{data}/../private/w.pt", "'..'"),
        ("weights/w.pt", "relative path"),
        ("synthetic", "relative path"),  # no built-in weights
        ("s3://other-bucket/w.pt", "outside the allowed dataset buckets"),
        ("s3://datasets/public-but-not-really/w.pt", "outside the allowed dataset buckets"),
        ("{data}/w.pt\n", "control characters"),
    ],
)
def test_pretrained_weights_refused_naming_the_field(roots, pretrained, needle):
    from service.policy import check_job_spec

    tmp, settings = roots
    with pytest.raises(ValueError) as err:
        check_job_spec(pretrained_spec(pretrained.format(data=tmp / "data", tmp=tmp)), settings)
    assert str(err.value).startswith("model.pretrained: ") and needle in str(err.value)


def test_pretrained_weights_need_a_root_and_a_given_root_is_checked(roots, tmp_path):
    from service.policy import check_job_spec

    tmp, settings = roots
    local = str(tmp / "data" / "voc" / "w.pt")
    with pytest.raises(ValueError, match="^model.pretrained: .*admits only 'synthetic'"):
        check_job_spec(pretrained_spec(local), ServiceSettings())
    for root, needle in (
        (str(tmp / "private"), "outside the allowed"),
        (str(tmp / "data" / "x"), "does not contain"),
    ):
        (tmp / "data" / "x").mkdir(exist_ok=True)
        with pytest.raises(ValueError, match=f"^model.pretrained_allowed_root: .*{needle}"):
            check_job_spec(pretrained_spec(local, pretrained_allowed_root=root), settings)
    from trainer.contract.spec import JobSpec

    orphan = JobSpec.model_validate({"model": {"pretrained_allowed_root": str(tmp / "data")}})
    with pytest.raises(ValueError, match="^model.pretrained_allowed_root: set without model.pretrained"):
        check_job_spec(orphan, settings)


def test_a_job_naming_a_device_is_refused_naming_the_field(roots):
    """Jobs train on Ray workers, which use the GPUs of resources.gpus_per_worker: a `device` there
    would silently do nothing, so anything but auto is a 422 naming it."""
    from service.policy import check_job_spec
    from trainer.contract.spec import JobSpec

    _, settings = roots
    assert check_job_spec(JobSpec.model_validate({"device": "auto"}), settings).device == "auto"
    with pytest.raises(
        ValueError, match=r"^device: 'cuda' has no effect on a job.*resources\.gpus_per_worker"
    ):
        check_job_spec(JobSpec.model_validate({"device": "cuda"}), settings)
