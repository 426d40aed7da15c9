"""The `anchor-opt` command, run as a user runs it: a subprocess of the installed console script."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXE = shutil.which("anchor-opt", path=str(Path(sys.executable).parent))
SMALL = [
    "--set", "data.num_train=32", "--set", "data.num_val=8", "--set", "model.image_size=64",
    "--set", "optim.batch_size=8", "--set", "optim.epochs=1", "--set", "eval.every_epochs=0",
]  # fmt: skip


def run(*args, cwd=None):
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_train_prints_anchors_and_writes_outputs(tmp_path):
    out = tmp_path / "run"
    proc = run("train", "demo", "--out", str(out), *SMALL, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "learned" in proc.stdout and "init" in proc.stdout and "mean_best_iou" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 4 and len(result["anchors"]["final"]) == 5

    again = run("train", "demo", "--out", str(out), *SMALL)
    assert again.returncode == 2 and "--resume" in again.stderr and "--fresh" in again.stderr
    assert json.loads((out / "result.json").read_text()) == result  # nothing lost

    fresh = run("train", "demo", "--out", str(out), *SMALL, "--set", "seed=1", "--fresh", "--quiet")
    assert fresh.returncode == 0, fresh.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "anchors.nmu=3"], "anchors.nmu"),
        (["--set", "optim.batch_size=-1"], "optim.batch_size"),
        (["--set", "anchors.init=circles"], "anchors.init"),
        (["--set", "novalue"], "key=value"),
        (["--set", "anchors.init=list"], "anchors.values"),
    ],
)
def test_bad_settings_name_the_field(tmp_path, args, message):
    proc = run("train", "demo", "--out", str(tmp_path / "x"), *args)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


def test_missing_and_malformed_config_files(tmp_path):
    proc = run("train", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "nope.yaml" in proc.stderr and "demo" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("anchors: [1, 2\n")
    proc = run("train", str(bad))
    assert proc.returncode == 2 and "bad.yaml" in proc.stderr


def test_config_prints_the_resolved_settings():
    proc = run("config", "demo", "--set", "anchors.num=3")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["anchors"]["num"] == 3 and cfg["anchors"]["init"] == "identical"
    assert cfg["tricks"]["soft_assign"]["temperature"] > 0
