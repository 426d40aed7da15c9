import numpy as np
import pytest
import torch

from tests.helpers import make_yolo_dataset
from trainer.config_data import AugmentConfig
from trainer.data.images import ImageDataset
from trainer.data.records import DataError, DetectionSet, ImageRecord
from trainer.data.sources import open_dataset


@pytest.fixture(scope="module")
def fixture_set(tmp_path_factory):
    root = make_yolo_dataset(tmp_path_factory.mktemp("yolo"), num_train=6, num_val=2)
    return open_dataset(root, "yolo", "train")


def test_evaluation_view_is_the_letterbox_and_maps_back_exactly(fixture_set):
    ds = ImageDataset(fixture_set, 64)
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)
        gt = ds.ground_truth(i)
        back = ds.to_original(i, target[:, 1:].numpy())
        np.testing.assert_allclose(back, gt["boxes"][~(gt["iscrowd"] | gt["difficult"])], atol=1e-3)
        assert target[:, 0].tolist() == gt["labels"].tolist()
        assert gt["size"] == (72, 96)
    assert torch.equal(ds[0][0], ds[0][0])


def test_training_view_is_seeded_and_keeps_boxes_inside(fixture_set):
    ds = ImageDataset(fixture_set, 64, AugmentConfig())
    a, b, c = ds[(2, 11)], ds[(2, 11)], ds[(2, 12)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    for i in range(len(ds)):
        _, target = ds[(i, i)]
        assert bool((target[:, 1:] >= 0).all() and (target[:, 1:] <= 64).all())
        assert bool((target[:, 3] - target[:, 1] >= 2).all() and (target[:, 4] - target[:, 2] >= 2).all())


def test_cached_images_are_the_decoded_ones(fixture_set):
    plain, cached = (
        ImageDataset(fixture_set, 64, AugmentConfig()),
        ImageDataset(fixture_set, 64, AugmentConfig(), cache=True),
    )
    for key in (0, 3, (1, 7), (5, 2)):
        assert all(torch.equal(x, y) for x, y in zip(plain[key], cached[key], strict=True))


def test_crowd_and_difficult_boxes_are_not_training_targets(tmp_path, fixture_set):
    r = fixture_set.records[0]
    boxes = [[0, 0, 30, 30], [40, 10, 80, 50], [5, 40, 25, 70]]
    flags = {"crowd": [True, False, False], "difficult": [False, False, True]}
    flagged = ImageRecord.build(r.image, r.width, r.height, boxes, [0, 1, 2], **flags)
    ds = ImageDataset(DetectionSet("flags", "coco", [flagged], ["a", "b", "c"]), 64)
    assert ds[0][1][:, 0].tolist() == [1.0]
    assert ds.boxes_wh().shape == (1, 2)
    gt = ds.ground_truth(0)
    assert gt["iscrowd"].tolist() == [True, False, False] and gt["difficult"].tolist() == [False, False, True]


def test_undecodable_or_resized_images_name_the_file(tmp_path, fixture_set):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    ds = ImageDataset(DetectionSet("bad", "coco", [ImageRecord.build(bad, 10, 10)], ["a"]), 64)
    with pytest.raises(DataError, match="broken.jpg"):
        ds[0]
    r = fixture_set.records[0]
    wrong = ImageRecord.build(r.image, r.width + 1, r.height)
    with pytest.raises(DataError, match=r"0000.png: image is 96x72 but its annotation says 97x72"):
        ImageDataset(DetectionSet("wrong", "coco", [wrong], ["a"]), 64)[0]


def test_real_coco128_images(shared_data):
    data = open_dataset(shared_data / "coco128", "yolo", "train")
    ds = ImageDataset(data, 128, AugmentConfig())
    for key in (0, 1, (2, 3), (50, 4)):
        image, target = ds[key]
        assert image.shape == (3, 128, 128) and target.shape[1] == 5
    wh = ds.boxes_wh()
    assert wh.shape == (929, 2) and float(wh.max()) <= 128.01


def test_an_image_cache_that_would_not_fit_is_refused_naming_the_setting(fixture_set, monkeypatch):
    """The service cannot count a real dataset's images at submit; the cache checks itself."""
    from trainer.data import images

    assert images.available_memory() > 0  # read from /proc/meminfo
    monkeypatch.setattr(images, "available_memory", lambda: 64 * 64 * 3 * len(fixture_set) // 2)
    with pytest.raises(DataError, match=r"^data.cache_images: \d+ images at 64 px take"):
        ImageDataset(fixture_set, 64, cache=True)
    ImageDataset(fixture_set, 64, cache=False)  # decoded as read: nothing held
