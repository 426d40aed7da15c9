import pytest

from tests.helpers import make_yolo_dataset
from trainer.contract.storage import open_storage
from trainer.data.records import DataError
from trainer.data.sources import detect_format, open_dataset


def _upload(folder, uri, settings) -> int:
    store = open_storage(uri, settings)
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    for path in files:
        store.write_bytes(path.relative_to(folder).as_posix(), path.read_bytes())
    return len(files)


def test_an_s3_dataset_is_read_from_the_cache_the_second_time(s3_bucket, tmp_path, caplog):
    bucket, settings = s3_bucket
    local = make_yolo_dataset(tmp_path / "ds", num_train=5, num_val=2)
    count = _upload(local, f"s3://{bucket}/datasets/shapes", settings)
    expected = open_dataset(local, "yolo", "train")

    caplog.set_level("INFO", logger="trainer.data.sources")
    first = open_dataset(f"s3://{bucket}/datasets/shapes", "auto", "train", storage_settings=settings)
    second = open_dataset(f"s3://{bucket}/datasets/shapes", "auto", "train", storage_settings=settings)
    downloads = [r.getMessage() for r in caplog.records if "downloaded" in r.getMessage()]
    assert downloads[0].endswith(
        f"{count} objects downloaded, 0 already cached in {settings.cache_dir}/s3/{bucket}/datasets/shapes"
    )
    assert "0 objects downloaded" in downloads[1] and f"{count} already cached" in downloads[1]
    for got in (first, second):
        assert got.format == "yolo" and len(got) == 5
        for a, b in zip(got.records, expected.records, strict=True):
            assert (
                a.image.name == b.image.name and (a.boxes == b.boxes).all() and (a.classes == b.classes).all()
            )
        assert str(got.records[0].image).startswith(str(settings.cache_dir))


def test_a_missing_s3_prefix_is_a_data_error(s3_bucket):
    bucket, settings = s3_bucket
    with pytest.raises(DataError, match=f"s3://{bucket}/nothing/here"):
        open_dataset(f"s3://{bucket}/nothing/here", storage_settings=settings)


def test_sources_that_are_not_datasets(tmp_path):
    with pytest.raises(DataError, match="only local paths, file:// and s3://"):
        open_dataset("https://example.com/coco.zip")
    with pytest.raises(DataError, match="not found"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no known dataset layout"):
        detect_format(tmp_path)
    with pytest.raises(DataError, match="unknown dataset format 'kitti'"):
        open_dataset(tmp_path, "kitti")


def test_file_uris_and_joined_splits(tmp_path):
    root = make_yolo_dataset(tmp_path / "ds", num_train=3, num_val=2)
    both = open_dataset(f"file://{root}", "yolo", "train+val")
    assert len(both) == 5 and both.name.count("+") == 1


def test_a_folder_with_two_layouts_asks_for_the_format(shared_data):
    with pytest.raises(DataError, match="several formats .*coco.*yolo"):
        detect_format(shared_data / "coco128")
