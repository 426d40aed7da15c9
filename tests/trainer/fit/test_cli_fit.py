"""`anchor-opt fit` with the flags of several levels, k-means centroids and the autoanchor baseline,
run as a user runs it (a subprocess of the installed console script) on coco128's real boxes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SHARED_DATA

EXE = shutil.which("anchor-opt", path=str(Path(sys.executable).parent))
COCO128 = SHARED_DATA / "coco128" / "annotations" / "instances_train2017_first128.json"


def run(*args, cwd=None):
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture
def coco128() -> Path:
    if not COCO128.exists():
        pytest.skip(f"coco128's COCO JSON not found at {COCO128} (real data, never downloaded)")
    return COCO128


def test_fit_three_levels_of_three_anchors_end_to_end(coco128, tmp_path):
    out = tmp_path / "fit.json"
    proc = run("fit", str(coco128), "--levels", "3", "--anchors", "3", "--min-stride-fraction", "1",
               "--compare", "autoanchor", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    s, mine = report["settings"], report["sets"]["learned"]
    assert (s["levels"], s["strides"], s["anchors"], s["anchors_per_level"]) == (3, [8, 16, 32], 9, 3)
    assert mine["levels"] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [lv["stride"] for lv in mine["per_level"]] == [8, 16, 32]
    for (w, h), lv in zip(mine["anchors"], mine["levels"], strict=True):
        assert min(w, h) >= [8, 16, 32][lv] - 0.01  # --min-stride-fraction 1
    assert report["fit"]["objective"] == "log-space+iou-refine"
    assert report["boxes"]["metrics_on"] == report["boxes"]["total"] == 929
    assert report["boxes"]["used"] + report["boxes"]["left_out"] == 929
    assert set(report["sets"]) == {"init (uniform)", "learned", "autoanchor"}
    assert "P3/8" in report["exports"]["yolov5"] and "P5/32" in report["exports"]["yolov5"]
    for text in ("anchors per level", "P4/16", "boxes fitted", "(YOLOv5's rule)"):
        assert text in proc.stdout, text


def test_fit_kmeans_mean_centroids_and_the_autoanchor_method(coco128, tmp_path):
    out = tmp_path / "km.json"
    proc = run("fit", str(coco128), "--method", "kmeans", "--centroid", "mean", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["fit"]["objective"] == "kmeans-mean" and report["settings"]["stride"] == 32
    assert "mean centroids" in proc.stdout
    plot = str(tmp_path / "a.png")
    proc = run("fit", str(coco128), "--method", "autoanchor", "--anchors", "4", "--plot", plot)
    assert proc.returncode == 0, proc.stderr
    assert "autoanchor: YOLOv5's autoanchor re-implemented" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--levels", "3", "--strides", "8,16"], "--strides lists 2 strides but --levels is 3"),
        (["--strides", "32,16"], "distinct and ascending"),
        (["--levels", "2", "--stride", "16"], "--stride is for one level"),
        (["--min-stride-fraction", "-1"], "--min-stride-fraction must be a positive number"),
        (["--refine-steps", "-3"], "--refine-steps must be 0"),
    ],
)
def test_fit_bad_level_flags_exit_2_naming_the_flag(coco128, tmp_path, args, message):
    proc = run("fit", str(coco128), *args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "anchors_fit.png").exists()
