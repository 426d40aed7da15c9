"""service.capacity.estimate_memory against measured runs: each config trains one epoch with
`anchor-opt train` in a child process, whose peak RSS wait4 reports; prints estimate / measured.

    python bench/memory_estimate.py            # the grid of estimate_memory's docstring (~5 min on 2 cores)
    python bench/memory_estimate.py --quick    # three runs

Runs in one process, no Ray: a Ray Train worker holds ~200 MiB more (Ray itself), which the
estimate counts, so the ratios here sit above those of a Ray job. Last line, for scripts:
`memory_estimate: runs N, estimate/measured min X max Y`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python bench/x.py` from a checkout

from service.capacity import MiB, estimate_memory  # noqa: E402
from trainer.config_files import load_config  # noqa: E402
from trainer.contract.spec import JobSpec  # noqa: E402

ONE_EPOCH = ["optim.epochs=1", "eval.every_epochs=0", "output.snapshot_every=1000"]
SMALL = ["data.synthetic.num_train=64", "data.synthetic.num_val=16"]
GRID = [
    *[[*SMALL, f"model.image_size={s}", f"optim.batch_size={b}"] for s in (128, 256, 512) for b in (8, 32)],
    ["model.image_size=256", "optim.batch_size=8", "data.synthetic.num_train=2000"],  # and num_val 200
    [*SMALL, "model.image_size=256", "optim.batch_size=8", "model.width=4"],
    ["model.backbone=darknet19", "model.image_size=128", "optim.batch_size=8", "data.synthetic.num_train=16",
     "data.synthetic.num_val=8"],
]  # fmt: skip
QUICK = [GRID[1], GRID[3], GRID[-1]]


def peak_rss(sets: list[str], out: str) -> int:
    """Bytes: the peak resident set of `anchor-opt train demo` with `sets`, from wait4."""
    cmd = [sys.executable, "-m", "trainer.cli", "train", "demo", "--out", out, "-q", "--fresh"]
    cmd += [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{' '.join(sets)}: {proc.stderr.read().decode()[-1000:]}")
    return usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three runs instead of the grid")
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for sets in QUICK if args.quick else GRID:
            sets = [*ONE_EPOCH, *sets]
            spec = load_config(REPO / "trainer" / "configs" / "demo.yaml", sets, model=JobSpec)
            estimate = estimate_memory(spec).per_worker
            measured = peak_rss(sets, str(Path(tmp) / "run"))
            ratios.append(estimate / measured)
            shown = " ".join(s for s in sets if s not in ONE_EPOCH)
            print(f"{shown:100s} measured {measured / MiB:6.0f} MiB  estimate {estimate / MiB:6.0f}  "
                  f"x{ratios[-1]:.2f}", flush=True)  # fmt: skip
    print(
        f"memory_estimate: runs {len(ratios)}, estimate/measured min {min(ratios):.2f} max {max(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
