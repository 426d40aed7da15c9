"""How well does a job scale from 1 to 2 Ray Train workers? Runs the same job (synthetic set, tiny
model, the per-worker batch fixed: weak scaling) on a local Ray with 1 worker and with 2 workers,
1 CPU each (gloo on CPU; NCCL with --gpus-per-worker 1 on a GPU machine), and reads each run's
training throughput from its own metrics: images per second over every epoch but the last (the
last one includes the final evaluation), the loop's real cost included (anchor snapshots, status
and pictures written by rank 0, checkpoint reports, the all-reduce).

    efficiency = w2_img_s / (2 * w1_img_s)

Final line: ddp_scaling: w1_img_s=.. w2_img_s=.. efficiency=..
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/x.py` from a checkout

from trainer.config_files import load_config  # noqa: E402
from trainer.contract.layout import metrics_key  # noqa: E402
from trainer.contract.spec import Resources  # noqa: E402
from trainer.contract.storage import StorageSettings  # noqa: E402
from trainer.contract.writer import RunWriter  # noqa: E402
from trainer.train.ray_run import ensure_ray, ray, train_on_ray  # noqa: E402


def throughput(workers: int, args: argparse.Namespace) -> float:
    cfg = load_config(
        None,
        [
            f"data.synthetic.num_train={args.images}",
            "data.synthetic.num_val=64",
            f"optim.batch_size={args.batch}",  # per worker
            f"optim.epochs={args.epochs}",
            f"model.image_size={args.image_size}",
            "eval.every_epochs=0",
        ],
    )
    root = tempfile.mkdtemp(prefix="ddp-bench-")
    try:
        resources = Resources(
            workers=workers, cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker
        )
        train_on_ray(cfg, root, resources, StorageSettings())  # the bench is an entry point: read once
        writer = RunWriter(root)
        rate = writer.read_json(metrics_key(args.epochs - 1))["images_per_s"]
        steps = writer.read_json("result.json")["steps"]
        print(f"{workers} worker(s): {steps} steps of {args.batch * workers} images, {rate:.1f} img/s")
        return rate
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32, help="per worker")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--cpus-per-worker", type=float, default=1)
    parser.add_argument("--gpus-per-worker", type=float, default=0)
    args = parser.parse_args()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ensure_ray(temp_dir=temp)
    print(f"cluster: {ray.cluster_resources()}")
    try:
        w1 = throughput(1, args)
        w2 = throughput(2, args)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    print(f"ddp_scaling: w1_img_s={w1:.1f} w2_img_s={w2:.1f} efficiency={w2 / (2 * w1):.3f}")


if __name__ == "__main__":
    main()
