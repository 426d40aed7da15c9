import torch

from trainer.config_data import SyntheticConfig
from trainer.data.batching import collate
from trainer.data.synthetic import SyntheticShapes, build_synthetic


def test_rendering_is_deterministic_from_the_seed():
    cfg = SyntheticConfig(num_train=8, num_val=4)
    a = SyntheticShapes(cfg, 64, 8, seed=3)
    b = SyntheticShapes(cfg, 64, 8, seed=3)
    c = SyntheticShapes(cfg, 64, 8, seed=4)
    assert torch.equal(a.images, b.images) and all(
        torch.equal(x, y) for x, y in zip(a.targets, b.targets, strict=True)
    )
    assert not torch.equal(a.images, c.images)


def test_boxes_lie_inside_the_image_with_valid_classes():
    cfg = SyntheticConfig(num_train=50)
    data = SyntheticShapes(cfg, 128, 50, seed=0)
    assert data.images.dtype == torch.uint8 and data.images.shape == (50, 3, 128, 128)
    t = torch.cat(data.targets)
    assert bool((t[:, 1:] >= 0).all() and (t[:, 1:] <= 128).all())
    assert bool((t[:, 3] > t[:, 1]).all() and (t[:, 4] > t[:, 2]).all())
    assert set(t[:, 0].long().tolist()) <= {0, 1, 2}
    counts = torch.tensor([len(x) for x in data.targets])
    assert counts.min() >= cfg.min_objects - 1 and counts.max() <= cfg.max_objects


def test_box_shapes_follow_the_mixture():
    cfg = SyntheticConfig(num_train=400)
    data = SyntheticShapes(cfg, 128, 400, seed=0)
    logs = data.boxes_wh().log()
    true = data.true_shapes().log()
    nearest = torch.cdist(logs, true).argmin(1)
    for k in range(len(true)):  # each component's boxes are centred on its shape
        mine = logs[nearest == k]
        assert len(mine) > 50
        assert (mine.mean(0) - true[k]).abs().max() < 0.03


def test_images_without_objects_and_validation_split():
    cfg = SyntheticConfig(num_train=4, num_val=3, min_objects=0, max_objects=0)
    train, val = build_synthetic(cfg, 64, seed=0)
    assert len(train) == 4 and len(val) == 3 and train.boxes_wh().shape == (0, 2)
    images, targets = collate([train[0], train[1]])
    assert images.shape == (2, 3, 64, 64) and targets.shape == (0, 6)


def test_collate_keeps_image_order():
    data = SyntheticShapes(SyntheticConfig(), 64, 4, seed=1)
    images, targets = collate([data[i] for i in range(4)])
    assert images.shape == (4, 3, 64, 64)
    assert targets[:, 0].tolist() == sorted(targets[:, 0].tolist())
    assert torch.equal(targets[targets[:, 0] == 2, 1:], data[2][1])


def test_training_view_flips_from_the_seed_and_boxes_follow():
    data = SyntheticShapes(SyntheticConfig(), 64, 4, seed=1, hflip=0.5)
    image, target = data[1]
    flips = 0
    for seed in range(20):
        a_image, a_target = data[(1, seed)]
        b_image, b_target = data[(1, seed)]
        assert torch.equal(a_image, b_image) and torch.equal(a_target, b_target)  # a function of the seed
        if torch.equal(a_image, image.flip(-1)):
            flips += 1
            torch.testing.assert_close(a_target[:, 1], 64 - target[:, 3])
            torch.testing.assert_close(a_target[:, 3], 64 - target[:, 1])
            torch.testing.assert_close(a_target[:, [0, 2, 4]], target[:, [0, 2, 4]])
        else:
            assert torch.equal(a_image, image) and torch.equal(a_target, target)
    assert 3 <= flips <= 17
    no_flip = SyntheticShapes(SyntheticConfig(), 64, 4, seed=1)
    assert all(torch.equal(no_flip[(1, s)][0], image) for s in range(5))
