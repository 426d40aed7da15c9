"""Helpers the test packages share (fixtures live in the conftest files; these are plain functions
and constants a test imports): where the repo and the real data are, a free loopback port, a small
training config, a YOLO dataset of rendered scenes on disk, and the service served over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trainer.config import TrainConfig
from trainer.config_files import apply_overrides

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # real COCO / VOC data beside the checkout (never copied)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app) -> Iterator[str]:
    """Runs `app` under uvicorn on a free loopback port until the block ends; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a safety bound against a hang, not a performance check
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def client(base: str, token: str | None = None):
    """An httpx client of the service at `base`, with `token` as its bearer token."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base, headers=headers, timeout=60)


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


def make_yolo_dataset(root, num_train: int = 24, num_val: int = 8, size: int = 96):
    """Writes a YOLO-layout dataset of rendered synthetic scenes (real PNG files) under `root`.

    Images are `size` x (3/4 size), so the letterbox pads them; returns `root`.
    """
    from pathlib import Path

    from PIL import Image

    from trainer.config_data import SyntheticConfig
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
