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
from trainer.fit.anchor_lists import parse_anchor_list, parse_compare, resolve_compare
from trainer.fit.solver import INITS, FitResult, fit_anchors
from trainer.fit.strides import check_fraction, check_strides, default_strides


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
    stride: int | None = None,
    levels: int | None = None,
    strides: Sequence[int] | None = None,
    min_stride_fraction: float | None = None,
    centroid: str = "median",
    refine_steps: int | None = None,
    seed: int = 0,
    fmt: str = "auto",
    split: str = "train",
    skip_bad: bool = False,
    temperature: float | None = None,
    dist: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    storage: StorageSettings | None = None,
) -> FitReport:
    """Reads `datasets` (paths or URIs; several are combined), fits `num` anchors per level (default
    5 on one level, 3 a level on several, or as many as `init` lists over all levels) by `method`
    and compares them with `compare` (fit.anchor_lists' formats).

    Levels: `levels` L and/or `strides` (one per level, finest first; default
    trainer.fit.strides.default_strides, one level at `stride`, 32 unless given).

    Bad input (an image size, the levels, an anchor list, a comparison) fails before any data is
    read; `progress` gets (done, total) while an s3:// dataset is fetched with the `storage` settings
    the caller read."""
    if image_size < 1:
        raise ValueError(f"--image-size must be a positive number of pixels, got {image_size}")
    if stride is not None and stride < 1:
        raise ValueError(f"--stride must be a positive number of pixels, got {stride}")
    if strides is not None:
        if stride is not None:
            raise ValueError("give --stride (one level) or --strides (one per level), not both")
        strides = check_strides(strides, levels)
    else:
        strides = default_strides(levels or 1, stride or 32)
    if stride is not None and len(strides) > 1:
        raise ValueError("--stride is for one level: give --strides for several")
    check_fraction(min_stride_fraction)
    parsed = [parse_compare(c) for c in compare]
    if not (isinstance(init, list) or init in INITS):
        init = parse_anchor_list(init, "--init")
    total = _total_anchors(num, init, len(strides))
    tuning = {k: v for k, v in (("temperature", temperature), ("dist", dist), ("refine_steps", refine_steps))
              if v is not None}  # fmt: skip
    torch.set_num_threads(1)  # small tensors: threads gain nothing and stall when the cores are busy
    opened = [
        open_dataset(
            d, fmt, split, skip_bad=skip_bad, check_images=False, progress=progress, storage_settings=storage
        )
        for d in datasets
    ]
    data = opened[0] if len(opened) == 1 else concat_sets(opened)
    boxes = data.boxes_wh(image_size)
    result = fit_anchors(
        boxes, total, method, seed=seed, init=init, centroid=centroid, levels=len(strides), strides=strides,
        min_stride_fraction=min_stride_fraction, **tuning,
    )  # fmt: skip
    report = fr.build_report(
        data.summary(), boxes, result, resolve_compare(parsed, boxes, total, seed),
        image_size=image_size, sources=[str(d) for d in datasets],
    )  # fmt: skip
    return FitReport(report, boxes, result)


def _total_anchors(num: int | None, init, levels: int) -> int:
    """Anchors over all levels: `num` a level (--anchors), else the --init list's, else 5 or 3 a level."""
    if num is not None:
        if num < 1:
            raise ValueError(f"--anchors must be at least 1, got {num}")
        return num * levels
    if isinstance(init, list):
        if len(init) % levels:
            raise ValueError(f"--init lists {len(init)} anchors, which do not split into {levels} levels")
        return len(init)
    return 5 if levels == 1 else 3 * levels
