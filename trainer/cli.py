"""`anchor-opt`: the command line.

    anchor-opt train CONFIG.yaml [--set key=value ...] [--out DIR] [--resume | --fresh]
    anchor-opt config [CONFIG.yaml] [--set key=value ...]
    anchor-opt fit DATASET... [--anchors A] [--image-size S] [--method kmeans|learned] [--compare LIST]

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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from trainer.config import load_config

BUILTIN_CONFIGS = Path(__file__).parent / "configs"

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


_COLUMNS = (
    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
)  # fmt: skip


class _FetchBar:
    """A bar for the objects of an s3:// dataset arriving in the local cache: (done, total) calls."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None

    def __call__(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task("fetching dataset", total=total, info="objects")
        self.progress.update(self.task, completed=done, total=total)


class _Bar:
    """Turns the trainer's progress events into a rich progress bar and per-epoch lines."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None
        self.fetch = _FetchBar(progress)

    def __call__(self, event: dict) -> None:
        kind = event["kind"]
        if kind == "fetch":
            self.fetch(event["done"], event["total"])
        elif kind == "start":
            for split, summary in event["dataset"].items():
                print_dataset_summary(
                    self.progress.console, summary | {"name": f"{split}: {summary['name']}"}
                )
            self.task = self.progress.add_task(
                "training", total=event["total"], completed=event["step"], info=""
            )
        elif kind == "step":
            loss = event["losses"]["total"]
            self.progress.update(
                self.task, completed=event["step"], info=f"{event['phase']:6s} loss {loss:7.3f}"
            )
        elif kind == "epoch":
            m = event["metrics"]
            ev = m["eval"] or {}
            ap50 = f"AP50 {ev['ap50']:.3f}  AP {ev['ap']:.3f}" if ev else ""
            loss = m["losses"].get("total", float("nan"))
            self.progress.console.print(
                f"epoch {event['epoch']}/{event['epochs']}  loss {loss:.3f}  {ap50}  "
                f"{m['images_per_s']:.0f} img/s"
            )


def _anchor_table(result: dict) -> Table:
    init, final = result["anchors"]["init"], result["anchors"]["final"]
    table = Table(title=f"anchors (w x h, pixels at the {result['image_size']} px input)")
    table.add_column("#", justify="right")
    table.add_column("init", justify="right")
    table.add_column("learned", justify="right")
    table.add_column("grid cells", justify="right")
    for k, (a, b, c) in enumerate(zip(init, final, result["anchors"]["final_cells"], strict=True)):
        table.add_row(
            str(k), f"{a[0]:.1f} x {a[1]:.1f}", f"{b[0]:.1f} x {b[1]:.1f}", f"{c[0]:.2f} x {c[1]:.2f}"
        )
    return table


def _fit_table(result: dict) -> Table:
    fit = result["fit"]
    table = Table(title="how well the anchors fit the training boxes")
    table.add_column("metric")
    table.add_column("init", justify="right")
    table.add_column("learned", justify="right")
    table.add_column("meaning")
    from trainer.anchors import FIT_METRICS  # torch: only the commands that train import it

    for key, text in FIT_METRICS.items():
        table.add_row(key, f"{fit['init'][key]:.3f}", f"{fit['final'][key]:.3f}", text)
    syn = result.get("synthetic") or {}
    if syn.get("log_error_final") is not None:
        table.add_row(
            "log_error", f"{syn['log_error_init']:.3f}", f"{syn['log_error_final']:.3f}",
            "mean |log| error to the true shapes, best matching (0.10 is about 10 %)",
        )  # fmt: skip
    return table


def print_dataset_summary(console: Console, summary: dict, extra: dict[str, str] | None = None) -> None:
    """Prints `DetectionSet.summary()` as one table; `extra` rows (label: text) come last."""
    table = Table(title=f"dataset {summary['name']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("format", summary["format"])
    table.add_row("images", f"{summary['images']} ({summary['images_without_boxes']} without boxes)")
    ignored = f"crowd {summary['crowd']}, difficult {summary['difficult']}: ignored in training"
    table.add_row("boxes", f"{summary['boxes']} ({ignored})")
    top = sorted(summary["per_class"].items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{name} {n}" for name, n in top[:6]) + (
        f", +{len(top) - 6} more" if len(top) > 6 else ""
    )
    table.add_row("classes", f"{summary['classes']}: {shown}")
    if summary["box_size_px"]:
        z = summary["box_size_px"]
        table.add_row(
            "box size (original px)",
            f"w {z['min_w']:g}-{z['max_w']:g}, h {z['min_h']:g}-{z['max_h']:g}, "
            f"median {z['median_w']:g} x {z['median_h']:g}",
        )
    bad = summary["bad_data"] or {}  # None for the synthetic set, which has none by construction
    counts = {k.replace("_", " "): v for k, v in bad.items() if k != "problems" and v}
    table.add_row("bad data", ", ".join(f"{k} {v}" for k, v in counts.items()) or "none")
    for problem in bad.get("problems", [])[:5]:
        table.add_row("", f"[dim]{problem}[/dim]")
    for label, text in (extra or {}).items():
        table.add_row(label, text)
    console.print(table)


def cmd_fit(args: argparse.Namespace) -> int:
    """Fits anchors to a dataset's box shapes, without training; prints, plots and writes them."""
    import json

    import torch

    from trainer import fit_report as fr
    from trainer.data.records import concat_sets
    from trainer.data.sources import open_dataset
    from trainer.fit import INITS, fit_anchors

    if args.image_size < 1:
        raise ValueError(f"--image-size must be a positive number of pixels, got {args.image_size}")
    compare = [fr.parse_compare(c) for c in args.compare]  # bad input fails before any data is read
    torch.set_num_threads(1)  # small tensors: threads gain nothing and stall when the cores are busy
    init = args.init if args.init in INITS else fr.parse_anchor_list(args.init, "--init")
    num = args.anchors or (len(init) if isinstance(init, list) else 5)
    tuning = {k: v for k, v in (("temperature", args.temperature), ("dist", args.dist)) if v is not None}
    with Progress(*_COLUMNS, console=console, transient=True) as progress:
        fetch = _FetchBar(progress)
        opened = [
            open_dataset(
                d, args.format, args.split, skip_bad=args.skip_bad, check_images=False, progress=fetch
            )
            for d in args.dataset
        ]
    data = opened[0] if len(opened) == 1 else concat_sets(opened)
    boxes = data.boxes_wh(args.image_size)
    result = fit_anchors(boxes, num, args.method, seed=args.seed, init=init, **tuning)
    report = fr.build_report(
        data.summary(), boxes, result, fr.resolve_compare(compare, boxes, num, args.seed),
        image_size=args.image_size, stride=args.stride, sources=[str(d) for d in args.dataset],
    )  # fmt: skip
    plot = Path(args.plot or (Path(args.out).with_suffix(".png") if args.out else "anchors_fit.png"))
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot.write_bytes(fr.draw(report, boxes, result, args.name))
    report["plot"] = str(plot)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")

    out = Console()
    print_dataset_summary(out, report["dataset"], fr.summary_rows(report))
    fr.print_report(out, report)
    out.print(f"picture: {plot}" + (f"\nreport:  {args.out}" if args.out else ""))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from trainer.outputs import CHECKPOINT_KEY, RESULT_KEY, RunWriter
    from trainer.run import train

    config_path = _resolve_config(args.config)
    cfg = load_config(config_path, args.set)
    out = args.out or str(Path("runs") / config_path.stem)  # a folder or s3://bucket/prefix
    writer = RunWriter(out)
    if not (args.resume or args.fresh) and (writer.exists(CHECKPOINT_KEY) or writer.exists(RESULT_KEY)):
        raise ValueError(f"{out} already holds a run: pass --resume to continue it or --fresh to replace it")

    with Progress(*_COLUMNS, console=console, disable=args.quiet) as progress:
        result = train(cfg, out, resume=args.resume, progress=_Bar(progress))

    out_console = Console()
    out_console.print(_anchor_table(result))
    out_console.print(_fit_table(result))
    if result.get("eval"):
        ev = result["eval"]
        out_console.print(
            f"validation: AP50 {ev['ap50']:.3f}  AP75 {ev['ap75']:.3f}  AP[.5:.95] {ev['ap']:.3f}"
        )
    out_console.print(
        f"outputs in {out.rstrip('/')}/: result.json, anchors/ (snapshots), metrics/, artifacts/anchors.png"
    )
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
    p.set_defaults(func=cmd_train)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    try:
        return args.func(args)
    except ValueError as exc:  # bad input: one clear message, no traceback
        # Not wrapped (a path cut in two cannot be pasted) and not read as markup (paths may hold [ ]).
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted: run again with --resume to continue from the last checkpoint")
        return 130


if __name__ == "__main__":
    sys.exit(main())
