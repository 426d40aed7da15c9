"""What the command line shows: progress bars, dataset summaries, anchor and fit tables."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

COLUMNS = (
    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
)  # fmt: skip


class FetchBar:
    """A bar for the objects of an s3:// dataset arriving in the local cache: (done, total) calls."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None

    def __call__(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task("fetching dataset", total=total, info="objects")
        self.progress.update(self.task, completed=done, total=total)


class Bar:
    """Turns the trainer's progress events into a rich progress bar and per-epoch lines."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None
        self.fetch = FetchBar(progress)

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


def anchor_table(result: dict) -> Table:
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


def fit_table(result: dict) -> Table:
    fit = result["fit"]
    table = Table(title="how well the anchors fit the training boxes")
    table.add_column("metric")
    table.add_column("init", justify="right")
    table.add_column("learned", justify="right")
    table.add_column("meaning")
    from trainer.model.anchors import FIT_METRICS  # torch: only the commands that train import it

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
