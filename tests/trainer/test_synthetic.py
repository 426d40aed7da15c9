import pytest
import torch

from trainer.config import DataConfig
from trainer.data.batching import collate, hflip
from trainer.data.synthetic import SyntheticShapes, build_synthetic


def test_rendering_is_deterministic_from_the_seed():
    cfg = DataConfig(num_train=8, num_val=4)
    a = SyntheticShapes(cfg, 64, 8, seed=3)
    b = SyntheticShapes(cfg, 64, 8, seed=3)
    c = SyntheticShapes(cfg, 64, 8, seed=4)
    assert torch.equal(a.images, b.images) and all(
        torch.equal(x, y) for x, y in zip(a.targets, b.targets, strict=True)
    )
    assert not torch.equal(a.images, c.images)


def test_boxes_lie_inside_the_image_with_valid_classes():
    cfg = DataConfig(num_train=50)
    data = SyntheticShapes(cfg, 128, 50, seed=0)
    assert data.images.dtype == torch.uint8 and data.images.shape == (50, 3, 128, 128)
    t = torch.cat(data.targets)
    assert bool((t[:, 1:] >= 0).all() and (t[:, 1:] <= 128).all())
    assert bool((t[:, 3] > t[:, 1]).all() and (t[:, 4] > t[:, 2]).all())
    assert set(t[:, 0].long().tolist()) <= {0, 1, 2}
    counts = torch.tensor([len(x) for x in data.targets])
    assert counts.min() >= cfg.min_objects - 1 and counts.max() <= cfg.max_objects


def test_box_shapes_follow_the_mixture():
    cfg = DataConfig(num_train=400)
    data = SyntheticShapes(cfg, 128, 400, seed=0)
    logs = data.boxes_wh().log()
    true = data.true_shapes().log()
    nearest = torch.cdist(logs, true).argmin(1)
    for k in range(len(true)):  # each component's boxes are centred on its shape
        mine = logs[nearest == k]
        assert len(mine) > 50
        assert (mine.mean(0) - true[k]).abs().max() < 0.03


def test_images_without_objects_and_validation_split():
    cfg = DataConfig(num_train=4, num_val=3, min_objects=0, max_objects=0)
    train, val = build_synthetic(cfg, 64, seed=0)
    assert len(train) == 4 and len(val) == 3 and train.boxes_wh().shape == (0, 2)
    images, targets = collate([train[0], train[1]])
    assert images.shape == (2, 3, 64, 64) and targets.shape == (0, 6)


def test_collate_and_flip_keep_boxes_on_their_objects():
    data = SyntheticShapes(DataConfig(), 64, 4, seed=1)
    images, targets = collate([data[i] for i in range(4)])
    assert targets[:, 0].tolist() == sorted(targets[:, 0].tolist())
    flip = torch.tensor([True, False, True, False])
    f_images, f_targets = hflip(images, targets, flip)
    assert torch.equal(f_images[0], images[0].flip(-1)) and torch.equal(f_images[1], images[1])
    for row, orig in zip(f_targets, targets, strict=True):
        if flip[int(row[0])]:
            assert row[2].item() == pytest.approx(64 - orig[4].item())
            assert row[4].item() == pytest.approx(64 - orig[2].item())
        else:
            assert torch.equal(row, orig)
    torch.testing.assert_close(hflip(*hflip(images, targets, flip), flip)[1], targets)
