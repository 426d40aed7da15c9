from __future__ import annotations

import pytest

from trainer.config import TrainConfig, apply_overrides


def small_config(*overrides: str) -> TrainConfig:
    """A run small enough for a unit test: 64 px input, 64 images, batches of 8, 16 steps."""
    base = {
        "data": {"synthetic": {"num_train": 64, "num_val": 16}},
        "model": {"image_size": 64, "width": 0.5},
        "optim": {"batch_size": 8, "epochs": 2, "lr_warmup_steps": 2},
        "tricks": {"warmup_steps": 6},
        "output": {"snapshot_every": 4},
    }
    return TrainConfig.model_validate(apply_overrides(base, list(overrides)))


@pytest.fixture
def small_cfg() -> TrainConfig:
    return small_config()


def make_yolo_dataset(root, num_train: int = 24, num_val: int = 8, size: int = 96):
    """Writes a YOLO-layout dataset of rendered synthetic scenes (real PNG files) under `root`.

    Images are `size` x (3/4 size), so the letterbox pads them; returns `root`.
    """
    from pathlib import Path

    from PIL import Image

    from trainer.config import SyntheticConfig
    from trainer.data.synthetic import render_image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cfg = SyntheticConfig()
    names = ["rectangle", "ellipse", "frame"]
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n"
        + "".join(f"  {i}: {n}\n" for i, n in enumerate(names))
    )
    height = size * 3 // 4
    for split, count, seed in (("train", num_train, 0), ("val", num_val, 1)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            image, target = render_image(cfg, size, seed, i)
            image = image[:height]  # crop to a landscape image; boxes below the crop are dropped
            Image.fromarray(image).save(root / "images" / split / f"{i:04d}.png")
            lines = []
            for cls, x1, y1, x2, y2 in target:
                y2 = min(y2, height)
                if y2 - y1 < 2:
                    continue
                cx, cy, w, h = (
                    (x1 + x2) / 2 / size,
                    (y1 + y2) / 2 / height,
                    (x2 - x1) / size,
                    (y2 - y1) / height,
                )
                lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            (root / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    return root


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray with 2 CPUs for the whole session, shut down at its end.

    Its temp folder is short (Ray puts Unix sockets under it; a long pytest tmp path breaks them).
    """
    import shutil
    import tempfile

    from trainer.distributed import ensure_ray, ray

    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    assert ensure_ray(num_cpus=2, temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
