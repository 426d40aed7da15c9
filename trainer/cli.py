"""`anchor-opt`: the command line.

    anchor-opt train CONFIG.yaml [--set key=value ...] [--out DIR] [--resume | --fresh] [--workers N]
    anchor-opt run-job JOB_ID --store URI
    anchor-opt config [CONFIG.yaml] [--set key=value ...]
    anchor-opt fit DATASET... [--anchors A] [--image-size S] [--method kmeans|learned] [--compare LIST]
    anchor-opt serve | submit JOB.yaml [--wait] | status ID | anchors ID | cancel ID | jobs | token | demo
                    (the service's commands: an `anchor_opt.commands` entry point, service.cli)

Torch is imported only by the commands that train, so the base install (no torch) can still run
the commands that do not.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import Progress

from trainer.artifacts.terminal import (
    COLUMNS,
    Bar,
    FetchBar,
    fit_table,
    result_anchors,
)
from trainer.config import load_config
from trainer.contract.storage import StorageError

BUILTIN_CONFIGS = Path(__file__).parent / "configs"
COMMAND_GROUPS = "anchor_opt.commands"  # entry points that add subcommands

console = Console(stderr=True)


def _resolve_config(name: str) -> Path:
    """A path, or the name of a built-in config (`demo` -> trainer/configs/demo.yaml)."""
    path = Path(name)
    if path.exists():
        return path
    builtin = BUILTIN_CONFIGS / f"{path.stem}.yaml"
    if path.parent == Path(".") and builtin.exists():
        return builtin
    known = ", ".join(sorted(p.stem for p in BUILTIN_CONFIGS.glob("*.yaml")))
    raise ValueError(f"config file not found: {name} (built-in configs: {known})")


def cmd_fit(args: argparse.Namespace) -> int:
    """Fits anchors to a dataset's box shapes, without training; prints, plots and writes them."""
    from trainer.fit.dataset import fit_dataset

    with Progress(*COLUMNS, console=console, transient=True) as progress:
        fitted = fit_dataset(
            args.dataset, num=args.anchors, method=args.method, init=args.init, compare=args.compare,
            image_size=args.image_size, stride=args.stride, seed=args.seed, fmt=args.format,
            split=args.split, skip_bad=args.skip_bad, temperature=args.temperature, dist=args.dist,
            progress=FetchBar(progress),
        )  # fmt: skip
    plot = Path(args.plot or (Path(args.out).with_suffix(".png") if args.out else "anchors_fit.png"))
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot.write_bytes(fitted.picture(args.name))
    fitted.report["plot"] = str(plot)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(fitted.json())
    out = Console()
    fitted.print(out)
    out.print(f"picture: {plot}" + (f"\nreport:  {args.out}" if args.out else ""))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from trainer.contract.layout import CHECKPOINT_PREFIX, RESULT_KEY
    from trainer.contract.writer import RunWriter

    config_path = _resolve_config(args.config)
    cfg = load_config(config_path, args.set)
    out = args.out or str(Path("runs") / config_path.stem)  # a folder or s3://bucket/prefix
    writer = RunWriter(out)
    if not (args.resume or args.fresh) and (writer.keys(CHECKPOINT_PREFIX) or writer.exists(RESULT_KEY)):
        raise ValueError(f"{out} already holds a run: pass --resume to continue it or --fresh to replace it")

    if args.workers is None:
        from trainer.train.local_run import train

        with Progress(*COLUMNS, console=console, disable=args.quiet) as progress:
            result = train(cfg, out, resume=args.resume, progress=Bar(progress))
    else:
        result = _train_on_ray(args, cfg, writer)
        if result is None:
            status = writer.status()
            error = status.error if status else "no status written"
            console.print(f"[red]training failed:[/red] {escape(error or '')}", soft_wrap=True)
            return 1

    out_console = Console()
    out_console.print(result_anchors(result))
    out_console.print(fit_table(result))
    if result.get("eval"):
        ev = result["eval"]
        out_console.print(
            f"validation: AP50 {ev['ap50']:.3f}  AP75 {ev['ap75']:.3f}  AP[.5:.95] {ev['ap']:.3f}"
        )
    out_console.print(
        f"outputs in {out.rstrip('/')}/: result.json, anchors/ (snapshots), metrics/, artifacts/ "
        "(anchors.png, anchors.yaml, anchors.cfg, weights.pt)"
    )
    return 0


def _train_on_ray(args: argparse.Namespace, cfg, writer) -> dict | None:
    """`train --workers N`: the same loop on N Ray Train workers (a local Ray unless --ray-address
    or RAY_ADDRESS names a cluster); the bar follows status.json as a job's poller would. Returns
    result.json, or None when training failed (status.json says why)."""
    import os
    import threading
    import time

    from trainer.contract.layout import RESULT_KEY
    from trainer.contract.spec import JobState, Resources
    from trainer.contract.storage import StorageSettings
    from trainer.train.driver import train_to_end

    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    cpus = args.cpus_per_worker
    if cpus is None:
        cpus = max(1, (os.cpu_count() or 1) // args.workers)
    resources = Resources(
        workers=args.workers,
        cpus_per_worker=cpus,
        gpus_per_worker=args.gpus_per_worker,
        max_failures=args.max_failures,
    )
    from trainer.train.ray_run import ensure_ray

    ensure_ray(args.ray_address, log_to_driver=False)  # in the main thread; the bar is the output
    if not args.resume:
        writer.clear()
    ended: list = []
    run = threading.Thread(
        target=lambda: ended.append(
            train_to_end(writer, cfg, resources, StorageSettings(), ray_address=args.ray_address, reopen=True)
        ),
        daemon=True,
    )
    with Progress(*COLUMNS, console=console, disable=args.quiet) as progress:
        task = progress.add_task(f"training on {args.workers} Ray worker(s)", total=None, info="starting")
        run.start()
        try:
            _follow(writer, run, progress, task)
        except KeyboardInterrupt:  # the workers stop with this process; the checkpoints stay
            writer.update_status(state=JobState.CANCELLED, error="interrupted", finished_at=time.time())
            raise
    final = ended[0] if ended else writer.status()
    return writer.read_json(RESULT_KEY) if final and final.state == JobState.SUCCEEDED else None


def _follow(writer, run, progress: Progress, task) -> None:
    """Draws status.json's progress until the training thread ends."""
    while run.is_alive():
        run.join(timeout=0.5)
        status = writer.status()
        if status and status.total_steps:
            speed = f"{status.images_per_s:.0f} img/s" if status.images_per_s else ""
            info = f"{status.phase or '':6s} epoch {status.epoch}/{status.epochs} {speed}"
            progress.update(task, completed=status.step, total=status.total_steps, info=info)


def cmd_run_job(args: argparse.Namespace) -> int:
    """Runs one job of a store to its end (what the control plane's Ray job executes)."""
    from trainer.contract.spec import JobState
    from trainer.train.driver import run_job

    status = run_job(args.job_id, args.store, ray_address=args.ray_address)
    if status.state != JobState.SUCCEEDED:
        console.print(
            f"[red]job {args.job_id} {status.state}:[/red] {escape(status.error or '')}", soft_wrap=True
        )
        return 1
    console.print(f"job {args.job_id} SUCCEEDED at step {status.step}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Prints the resolved configuration (defaults, file, --set) as YAML."""
    import yaml

    cfg = load_config(_resolve_config(args.config) if args.config else None, args.set)
    sys.stdout.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anchor-opt", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a detector and learn its anchors, locally")
    p.add_argument("config", help="YAML config file, or the name of a built-in one (demo, default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set anchors.init=identical (repeatable)")  # fmt: skip
    p.add_argument("--out", help="output folder or s3://bucket/prefix (default: runs/<config name>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    mode.add_argument("--fresh", action="store_true", help="replace whatever run is in --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ray = p.add_argument_group("distributed (Ray Train)")
    ray.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="train on N Ray Train workers (DDP ranks); default: in this process, no Ray",
    )
    ray.add_argument(
        "--cpus-per-worker",
        type=float,
        metavar="C",
        help="CPUs per worker (default: this machine's CPUs / N)",
    )
    ray.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0,
        metavar="G",
        help="GPUs per worker (default 0: CPU training with gloo; >= 1: NCCL, bf16)",
    )
    ray.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="restarts from the last checkpoint after a worker dies (default 2)",
    )
    ray.add_argument("--ray-address", help="Ray cluster to use (default: RAY_ADDRESS, else a local Ray)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run-job", help="run a stored job to its end on Ray Train (what a Ray job executes)")
    p.add_argument("job_id", help="the job's id (jobs/<id>/ in the store)")
    p.add_argument("--store", required=True, help="job store root: a folder, file:// or s3://bucket/prefix")
    p.add_argument("--ray-address", help="Ray cluster to use (default: RAY_ADDRESS, else a local Ray)")
    p.set_defaults(func=cmd_run_job)

    p = sub.add_parser("fit", help="fit anchors to a dataset's boxes without training (k-means or learned)")
    p.add_argument("dataset", nargs="+", help="dataset path, file:// or s3:// URI; several are combined")
    p.add_argument("--anchors", type=int, help="number of anchors A (default 5, or the --init list's)")
    p.add_argument("--image-size", type=int, default=416, help="model input size in pixels (default 416)")
    p.add_argument(
        "--method",
        choices=("kmeans", "learned"),
        default="learned",
        help="kmeans: YOLOv2's IoU k-means; learned (default): the paper's log-space objective",
    )
    p.add_argument(
        "--init",
        default="uniform",
        help="learned's start: identical, uniform (default), kmeans, or w,h pairs in px",
    )
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="[NAME=]LIST",
        help="anchors to compare with, px at the input size: '10,13, 16,30', '[[10,13],[16,30]]',"
        " a JSON from --out, or kmeans|uniform|identical (repeatable)",
    )
    p.add_argument("--out", help="write the report as JSON to this file (picture beside it)")
    p.add_argument("--plot", help="where the picture goes (default: beside --out, else anchors_fit.png)")
    p.add_argument("--format", default="auto", choices=("auto", "coco", "yolo", "voc", "brainwash"))
    p.add_argument("--split", default="train", help="split(s) to read, a+b combines (default train)")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) malformed annotations")
    p.add_argument("--seed", type=int, default=0, help="k-means seeding and tie-breaking jitter")
    p.add_argument("--name", help="what to call the dataset in the picture's title")
    p.add_argument("--stride", type=int, default=32, help="pixels per grid cell, for the cell units")
    p.add_argument("--temperature", type=float, help="soft-assignment temperature T (learned; default 0.1)")
    p.add_argument(
        "--dist", choices=("iou", "log_l2"), help="soft-assignment distance (learned; default iou)"
    )
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("config", help="print the full configuration a train command would use")
    p.add_argument("config", nargs="?", help="YAML config file or built-in name (default: the defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.set_defaults(func=cmd_config)

    add_command_groups(sub)
    return parser


def add_command_groups(sub) -> None:
    """Adds the subcommands that installed packages register as `anchor_opt.commands` entry points:
    the service's (serve, submit, status, anchors, cancel, jobs, token, demo; pyproject.toml). The
    trainer knows no service module: it only calls what is registered, each with the subparsers."""
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group=COMMAND_GROUPS), key=lambda e: e.name):
        entry.load()(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the API client: a line per request otherwise
    try:
        return args.func(args)
    except (ValueError, StorageError) as exc:  # bad input, unreachable storage: one clear message
        message = str(exc)
        if isinstance(exc, StorageError) and exc.uri and exc.uri not in message:
            message += f" ({exc.uri})"
        # Not wrapped (a path cut in two cannot be pasted) and not read as markup (paths may hold [ ]).
        console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted: run again with --resume to continue from the last checkpoint")
        return 130


if __name__ == "__main__":
    sys.exit(main())
