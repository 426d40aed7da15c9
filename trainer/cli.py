"""`anchor-opt`: the command line.

    anchor-opt train CONFIG.yaml [--set key=value ...] [--out DIR] [--resume | --fresh]
    anchor-opt config [CONFIG.yaml] [--set key=value ...]

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


class _Bar:
    """Turns the trainer's progress events into a rich progress bar and per-epoch lines."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None

    def __call__(self, event: dict) -> None:
        kind = event["kind"]
        if kind == "start":
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
    meaning = {
        "mean_best_iou": "mean IoU of each box's shape with its best anchor (higher is better)",
        "bpr": "best possible recall: share of boxes some anchor can match (w, h ratios < 4)",
        "anchors_per_target": "anchors that can match a box, on average",
    }
    for key, text in meaning.items():
        table.add_row(key, f"{fit['init'][key]:.3f}", f"{fit['final'][key]:.3f}", text)
    syn = result.get("synthetic") or {}
    if syn.get("log_error_final") is not None:
        table.add_row(
            "log_error", f"{syn['log_error_init']:.3f}", f"{syn['log_error_final']:.3f}",
            "mean |log| error to the true shapes, best matching (0.10 is about 10 %)",
        )  # fmt: skip
    return table


def cmd_train(args: argparse.Namespace) -> int:
    from trainer.outputs import CHECKPOINT_KEY, RESULT_KEY, RunWriter
    from trainer.run import train

    config_path = _resolve_config(args.config)
    cfg = load_config(config_path, args.set)
    out = Path(args.out or Path("runs") / config_path.stem)
    writer = RunWriter(out)
    if not (args.resume or args.fresh) and (writer.exists(CHECKPOINT_KEY) or writer.exists(RESULT_KEY)):
        raise ValueError(f"{out} already holds a run: pass --resume to continue it or --fresh to replace it")

    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console, disable=args.quiet) as progress:
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
        f"outputs in {out}/: result.json, anchors/ (snapshots), metrics/, artifacts/anchors.png"
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
    p.add_argument("--out", help="output folder (default: runs/<config name>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    mode.add_argument("--fresh", action="store_true", help="replace whatever run is in --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

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
        console.print(f"[red]error:[/red] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted: run again with --resume to continue from the last checkpoint")
        return 130


if __name__ == "__main__":
    sys.exit(main())
