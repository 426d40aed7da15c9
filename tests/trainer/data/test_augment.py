import numpy as np
import pytest

from trainer.config_data import AugmentConfig
from trainer.data.augment import PAD_VALUE, Letterbox, apply, jitter_transform, letterbox_transform


def _image(w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("w,h", [(640, 480), (480, 640), (333, 500), (500, 333), (97, 61), (128, 128)])
def test_letterbox_geometry_matches_the_transform_and_inverts_exactly(w, h):
    size = 160
    boxes = np.array([[0, 0, w, h], [w * 0.25, h * 0.1, w * 0.5, h * 0.9]], np.float32)
    out, got, classes = apply(letterbox_transform(size), _image(w, h), boxes, np.array([3, 7]))
    lb = Letterbox(w, h, size)
    assert out.shape == (size, size, 3) and classes.tolist() == [3, 7]
    np.testing.assert_allclose(got, lb.to_input(boxes), atol=1e-3)
    np.testing.assert_allclose(lb.to_original(got), boxes, atol=1e-3)
    # The padding is grey and where the geometry says: left/top offset, resized content.
    (nw, nh), (left, top) = lb.resized, lb.offset
    assert max(nw, nh) == size
    if left:
        assert (out[:, :left] == PAD_VALUE).all() and (out[:, left + nw :] == PAD_VALUE).all()
    if top:
        assert (out[:top] == PAD_VALUE).all() and (out[top + nh :] == PAD_VALUE).all()


def test_training_transform_is_a_function_of_the_seed_and_keeps_boxes_valid():
    t = jitter_transform(AugmentConfig())
    image = _image(128, 128)
    boxes = np.array([[10, 10, 60, 90], [70, 50, 126, 120], [0, 0, 4, 4]], np.float32)
    classes = np.array([0, 1, 2])
    a = apply(t, image, boxes, classes, seed=5)
    b = apply(t, image, boxes, classes, seed=5)
    c = apply(t, image, boxes, classes, seed=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    for _, out_boxes, out_classes in (a, c):
        assert len(out_boxes) == len(out_classes) <= 3
        assert (out_boxes >= 0).all() and (out_boxes <= 128).all()
        wh = out_boxes[:, 2:] - out_boxes[:, :2]
        assert (wh >= AugmentConfig().min_size).all()  # the 4 px box shrinks under 2 px or stays valid


def test_flip_only_training_moves_boxes_with_the_image():
    cfg = AugmentConfig(hflip=1.0, scale=0, translate=0, colour=0)
    image = _image(128, 128)
    boxes = np.array([[10, 20, 40, 60]], np.float32)
    out, got, _ = apply(jitter_transform(cfg), image, boxes, np.array([0]), seed=0)
    assert np.array_equal(out, image[:, ::-1])
    np.testing.assert_allclose(got, [[88, 20, 118, 60]], atol=1e-3)


def test_boxes_mostly_pushed_out_of_view_are_dropped():
    # Zoomed in 1.5x around the centre of a 128 px input, a box in the corner leaves the view.
    cfg = AugmentConfig(hflip=0, scale=0.5, translate=0, colour=0, min_visibility=0.3)
    boxes = np.array([[0, 0, 12, 12], [54, 54, 74, 74]], np.float32)
    kept = [len(apply(jitter_transform(cfg), _image(128, 128), boxes, np.array([0, 1]), s)[1])
            for s in range(30)]  # fmt: skip
    assert min(kept) == 1 and max(kept) == 2  # the centre box always survives, the corner one not always
