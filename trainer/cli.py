"""`anchor-opt`: the command line.

    anchor-opt train CONFIG.yaml [--set key=value ...] [--out DIR] [--resume | --fresh] [--device D]
                     [--workers N]
    anchor-opt run-job JOB_ID --store URI
    anchor-opt config [CONFIG.yaml] [--set key=value ...]
    anchor-opt fit DATASET... [--anchors A] [--levels L] [--image-size S] [--method learned|kmeans|autoanchor]
                   [--compare LIST]
    anchor-opt serve | submit JOB.yaml [--wait] | status ID | anchors ID | cancel ID | jobs | token | demo
                    (the service's commands: an `anchor_opt.commands` entry point, service.cli)

Here: the arguments, and the errors every command reports the same way; what each command does is
in trainer.commands. Torch is imported only by the commands that train, so the base install (no
torch) can still run the commands that do not.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rich.logging import RichHandler
from rich.markup import escape

from trainer.commands import builtin_configs, cmd_config, cmd_fit, cmd_run_job, cmd_train, console
from trainer.contract.storage import StorageError

COMMAND_GROUPS = "anchor_opt.commands"  # entry points that add subcommands


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anchor-opt")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def _int_list(text: str) -> list[int]:
    """`8,16,32` -> [8, 16, 32], for --strides."""
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of whole numbers such as 8,16,32") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anchor-opt", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a detector and learn its anchors, locally")
    builtins = ", ".join(builtin_configs())
    p.add_argument(
        "config",
        nargs="?",
        help=f"YAML config file (configs/ has the paper's), or a built-in one: {builtins}; with --resume "
        "and --out, the run's own config.yaml is used and CONFIG may be left out",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set anchors.init=identical (repeatable)")  # fmt: skip
    p.add_argument("--out", help="output folder or s3://bucket/prefix (default: runs/<config name>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    mode.add_argument("--fresh", action="store_true", help="replace whatever run is in --out")
    p.add_argument(
        "--extend",
        action="store_true",
        help="with --resume: train a run longer than it was set to, --set optim.epochs=N (N larger); "
        "the lr schedule is recomputed for the new length from the step reached",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--device",
        metavar="auto|cpu|cuda[:N]",
        help="where a run in this process trains, as --set device=...: auto (the config's default) is "
        "the GPU when there is one, else the CPU; bf16 autocast on a GPU (not with --workers)",
    )
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

    p = sub.add_parser(
        "fit", help="fit anchors to a dataset's boxes without training (learned, k-means or autoanchor)"
    )
    p.add_argument("dataset", nargs="+", help="dataset path, file:// or s3:// URI; several are combined")
    p.add_argument(
        "--anchors", type=int, help="anchors A on each level (default 5 on one level, 3 a level on several)"
    )
    p.add_argument("--image-size", type=int, default=416, help="model input size in pixels (default 416)")
    p.add_argument(
        "--method",
        choices=("learned", "kmeans", "autoanchor"),
        default="learned",
        help="learned (default): the paper's log-space warm-up, then mean best IoU under a BPR guard; "
        "kmeans: YOLOv2's IoU k-means; autoanchor: YOLOv5's autoanchor, re-implemented (a baseline)",
    )
    p.add_argument(
        "--centroid",
        choices=("median", "mean"),
        default="median",
        help="kmeans: each cluster's new centre, the median (default) or the mean (YOLOv2's) of its w, h",
    )
    p.add_argument(
        "--refine-steps",
        type=int,
        metavar="N",
        help="learned: at most N steps on mean best IoU after the warm-up (default 200, it stops "
        "earlier); 0: the log-space objective alone, hard phase included",
    )
    p.add_argument(
        "--init",
        default="uniform",
        help="learned's start: identical, uniform (default), kmeans, or w,h pairs in px (all levels)",
    )
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="[NAME=]LIST",
        help="anchors to compare with, px at the input size: '10,13, 16,30', '[[10,13],[16,30]]',"
        " a JSON from --out, or kmeans|uniform|identical|autoanchor (repeatable)",
    )
    p.add_argument("--out", help="write the report as JSON to this file (picture beside it)")
    p.add_argument("--plot", help="where the picture goes (default: beside --out, else anchors_fit.png)")
    p.add_argument("--format", default="auto", choices=("auto", "coco", "yolo", "voc", "brainwash"))
    p.add_argument("--split", default="train", help="split(s) to read, a+b combines (default train)")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) malformed annotations")
    p.add_argument("--seed", type=int, default=0, help="k-means seeding, autoanchor's search, tie-breaking")
    p.add_argument("--name", help="what to call the dataset in the picture's title")
    levels = p.add_argument_group("levels")
    levels.add_argument(
        "--levels",
        type=int,
        metavar="L",
        help="fit L x A anchors jointly, then cut them by area into L levels, the smallest on the finest",
    )
    levels.add_argument(
        "--strides",
        type=_int_list,
        metavar="S1,S2,..",
        help="each level's stride in px, finest first (default: 16,32 for 2 levels, 8,16,32 for 3, "
        "8,16,32,64 for 4)",
    )
    levels.add_argument("--stride", type=int, help="one level: pixels per grid cell, for the cell units (32)")
    levels.add_argument(
        "--min-stride-fraction",
        type=float,
        metavar="F",
        help="keep each level's anchors at least F x its stride in w and h (default: no floor)",
    )
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
