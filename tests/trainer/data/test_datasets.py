import pytest

from tests.helpers import make_yolo_dataset, small_config
from trainer.data.datasets import build_datasets
from trainer.data.records import DataError


def test_synthetic_by_default():
    data = build_datasets(small_config())
    assert data.class_names == ["rectangle", "ellipse", "frame"] and data.true_shapes.shape == (5, 2)
    assert len(data.train) == 64 and len(data.val) == 16
    assert data.summary()["train"]["images"] == 64


def test_a_real_dataset_by_source_and_splits(tmp_path):
    root = make_yolo_dataset(tmp_path / "ds", num_train=6, num_val=3)
    data = build_datasets(small_config(f"data.source={root}", "data.format=auto"))
    assert data.true_shapes is None and data.num_classes == 3
    assert len(data.train) == 6 and len(data.val) == 3
    summary = data.summary()
    assert summary["train"]["format"] == "yolo" and summary["val"]["images"] == 3
    assert set(summary["train"]["bad_data"]) >= {"clipped", "dropped_empty", "skipped_lines"}


def test_missing_split_or_source_is_a_clear_error(tmp_path):
    root = make_yolo_dataset(tmp_path / "ds", num_train=2, num_val=1)
    with pytest.raises(DataError, match="test"):
        build_datasets(small_config(f"data.source={root}", "data.val_split=test"))
    with pytest.raises(DataError, match="not found"):
        build_datasets(small_config(f"data.source={tmp_path / 'nowhere'}"))


def test_a_single_annotation_file_serves_both_splits_with_a_warning(tmp_path, caplog):
    import json

    from PIL import Image

    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [2, 2, 10, 12], "iscrowd": 0}],
        "categories": [{"id": 3, "name": "thing"}],
    }
    (tmp_path / "one.json").write_text(json.dumps(coco))
    data = build_datasets(small_config(f"data.source={tmp_path / 'one.json'}"))
    assert len(data.train) == len(data.val) == 1 and data.class_names == ["thing"]
    assert "the same images" in caplog.text


def test_val_fraction_holds_out_a_seeded_stable_share_of_the_train_split(tmp_path):
    root = make_yolo_dataset(tmp_path / "ds", num_train=20, num_val=2)
    cfg = small_config(f"data.source={root}", "data.val_fraction=0.25", "data.val_split=nothing")
    data = build_datasets(cfg)
    assert (len(data.train), len(data.val)) == (15, 5)  # val_split is not read
    train, val = ({r.image.name for r in s.records} for s in (data.train.data, data.val.data))
    assert not train & val and len(train | val) == 20
    again = build_datasets(cfg)
    assert {r.image.name for r in again.val.data.records} == val  # the same draw every time
    other = build_datasets(small_config(f"data.source={root}", "data.val_fraction=0.25", "data.split_seed=1"))
    assert {r.image.name for r in other.val.data.records} != val
    assert "[val: 5 of 20, seed 0]" in data.summary()["val"]["name"]


def test_val_fraction_needs_two_images(tmp_path):
    root = make_yolo_dataset(tmp_path / "ds", num_train=1, num_val=1)
    with pytest.raises(DataError, match="data.val_fraction needs at least 2 images"):
        build_datasets(small_config(f"data.source={root}", "data.val_fraction=0.5"))
