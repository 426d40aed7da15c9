"""fit_dataset: a dataset's anchors fitted without training, as one FitReport that the command line
prints, writes as JSON and draws; the three come from the same object, so they cannot disagree."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from rich.console import Console

from trainer.artifacts.terminal import print_dataset_summary
from trainer.contract.storage import StorageSettings
from trainer.data.records import concat_sets
from trainer.data.sources import open_dataset
from trainer.fit import report as fr
from trainer.fit.solver import INITS, FitResult, fit_anchors


@dataclass(frozen=True)
class FitReport:
    """The report (a JSON-ready dict, fit.report's layout), and the boxes and fit it was built from."""

    report: dict
    boxes_wh: torch.Tensor
    result: FitResult

    def json(self) -> str:
        return json.dumps(self.report, indent=1) + "\n"

    def picture(self, name: str | None = None) -> bytes:
        """The Figure-2 style PNG: box density, the fit's path, every compared set as markers."""
        return fr.draw(self.report, self.boxes_wh, self.result, name)

    def print(self, console: Console) -> None:
        print_dataset_summary(console, self.report["dataset"], fr.summary_rows(self.report))
        fr.print_report(console, self.report)


def fit_dataset(
    datasets: Sequence[str],
    *,
    num: int | None = None,
    method: str = "learned",
    init: str | list[tuple[float, float]] = "uniform",
    compare: Sequence[str] = (),
    image_size: int = 416,
    stride: int = 32,
    seed: int = 0,
    fmt: str = "auto",
    split: str = "train",
    skip_bad: bool = False,
    temperature: float | None = None,
    dist: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    storage: StorageSettings | None = None,
) -> FitReport:
    """Reads `datasets` (paths or URIs; several are combined), fits `num` anchors (default 5, or as
    many as `init` lists) by `method` and compares them with `compare` (fit.report's formats).

    Bad input (an image size, an anchor list, a comparison) fails before any data is read; `progress`
    gets (done, total) while an s3:// dataset is fetched with the `storage` settings the caller read."""
    if image_size < 1:
        raise ValueError(f"--image-size must be a positive number of pixels, got {image_size}")
    parsed = [fr.parse_compare(c) for c in compare]
    if not (isinstance(init, list) or init in INITS):
        init = fr.parse_anchor_list(init, "--init")
    num = num or (len(init) if isinstance(init, list) else 5)
    tuning = {k: v for k, v in (("temperature", temperature), ("dist", dist)) if v is not None}
    torch.set_num_threads(1)  # small tensors: threads gain nothing and stall when the cores are busy
    opened = [
        open_dataset(
            d, fmt, split, skip_bad=skip_bad, check_images=False, progress=progress, storage_settings=storage
        )
        for d in datasets
    ]
    data = opened[0] if len(opened) == 1 else concat_sets(opened)
    boxes = data.boxes_wh(image_size)
    result = fit_anchors(boxes, num, method, seed=seed, init=init, **tuning)
    report = fr.build_report(
        data.summary(), boxes, result, fr.resolve_compare(parsed, boxes, num, seed),
        image_size=image_size, stride=stride, sources=[str(d) for d in datasets],
    )  # fmt: skip
    return FitReport(report, boxes, result)
