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
    "--set", "data.synthetic.num_train=32", "--set", "data.synthetic.num_val=8",
    "--set", "model.image_size=64",
    "--set", "optim.batch_size=8", "--set", "optim.epochs=1", "--set", "eval.every_epochs=0",
]  # fmt: skip


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


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


# --- anchor-opt fit ----------------------------------------------------------------------------

YOLOV2_VOC_PX = "42.31,55.41, 102.17,128.30, 161.79,259.17, 303.08,154.90, 359.56,320.23"  # yolo-voc.cfg x 32


def write_coco(path: Path, boxes_per_image: list[list[list[float]]], size=(640, 480)) -> Path:
    """An annotation-only COCO instances JSON: one image per entry, bbox [x, y, w, h] pixels."""
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": size[0], "height": size[1]}
              for i in range(len(boxes_per_image))]  # fmt: skip
    anns = [
        {"id": len(images) * 100 + k, "image_id": i + 1, "category_id": 1 + k % 2, "bbox": b, "iscrowd": 0}
        for i, boxes in enumerate(boxes_per_image)
        for k, b in enumerate(boxes)
    ]
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def small_coco(path: Path) -> Path:
    shapes = [[20, 24], [60, 150], [200, 90], [380, 300], [33, 70]]
    return write_coco(path, [[[5 * i, 3 * i, w * (1 + 0.03 * i), h] for w, h in shapes] for i in range(12)])


def test_fit_prints_and_writes_every_set_with_its_metrics(tmp_path):
    data = small_coco(tmp_path / "small.json")
    out = tmp_path / "report" / "fit.json"
    proc = run("fit", str(data), "--anchors", "3", "--image-size", "320", "--compare", "10,13, 16,30, 33,23",
               "--compare", "km=kmeans", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert list(report["sets"]) == ["init (uniform)", "learned", "compare", "km"]
    for s in report["sets"].values():
        assert set(s["metrics"]) == {"mean_best_iou", "bpr", "anchors_per_target"}
    assert len(report["sets"]["learned"]["anchors"]) == 3 and report["boxes"]["used"] == 60
    assert report["dataset"]["images"] == 12 and report["plot"] == str(out.with_suffix(".png"))
    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
    for text in ("mean_best_iou", "best possible recall", "anchors = ", "YOLOv5", "boxes fitted", str(out)):
        assert text in proc.stdout


def test_fit_kmeans_with_an_init_list_puts_the_picture_in_the_cwd(tmp_path):
    data = small_coco(tmp_path / "small.json")
    proc = run("fit", str(data), "--method", "kmeans", "--compare", "[[20, 20], [60, 60]]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "anchors_fit.png").stat().st_size > 5_000 and "kmeans" in proc.stdout
    proc = run("fit", str(data), "--init", "20,20, 60,60, 150,150", "--plot", str(tmp_path / "p.png"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.png").exists() and "from the list init" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare", "10,13, 16"], "--compare '10,13, 16': 3 numbers"),
        (["--compare", "10,13, big,30"], "'big' is not a number"),
        (["--compare", "nope.json"], "file not found: nope.json"),
        (["--init", "10,13, 16,30", "--anchors", "5"], "5 positive (w, h) pairs"),
    ],
)
def test_fit_bad_options_exit_2_naming_the_problem(tmp_path, args, message):
    proc = run("fit", str(small_coco(tmp_path / "small.json")), *args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "anchors_fit.png").exists()


def test_fit_bad_datasets_exit_2_naming_the_problem(tmp_path):
    proc = run("fit", str(tmp_path / "missing"), cwd=tmp_path)
    assert proc.returncode == 2 and "not found" in proc.stderr and "missing" in proc.stderr
    empty = write_coco(tmp_path / "empty.json", [[], []])
    proc = run("fit", str(empty), "--format", "coco", cwd=tmp_path)
    assert proc.returncode == 2 and "no boxes to fit anchors to" in proc.stderr, proc.stderr
    tiny = write_coco(tmp_path / "tiny.json", [[[0, 0, 1, 1], [5, 5, 1, 1.5]]])
    proc = run("fit", str(tiny), "--image-size", "416", cwd=tmp_path)
    under = "all 2 boxes are under 2 px in both width and height"  # a box is kept when either side is 2 px
    assert proc.returncode == 2 and under in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(tiny.read_text().replace('"bbox": [0, 0, 1, 1]', '"bbox": [0, 0, "one", 1]'))
    proc = run("fit", str(broken), cwd=tmp_path)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "bbox must be 4 numbers" in err and "(give --skip-bad to skip" in err, err


def test_fit_on_voc07_learned_beats_kmeans_and_yolov2(shared_data, tmp_path):
    voc = shared_data / "voc"
    files = [voc / f"pascal_{s}2007.json" for s in ("train", "val", "test")]
    if not all(f.exists() for f in files):
        pytest.skip(f"VOC07 annotation JSONs not found in {voc}")
    out = tmp_path / "voc.json"
    proc = run("fit", *map(str, files), "--anchors", "5", "--image-size", "416", "--out", str(out),
               "--compare", f"yolov2={YOLOV2_VOC_PX}", "--compare", "kmeans")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    iou = {name: s["metrics"]["mean_best_iou"] for name, s in report["sets"].items()}
    assert report["boxes"]["used"] == 30638 and report["fit"]["converged"]
    assert iou["learned"] >= iou["kmeans"] >= iou["yolov2"]
    # measured: 0.6075 (median k-means 0.6062, YOLOv2's mean-centroid k-means 0.5898)
    assert iou["learned"] == pytest.approx(0.6075, abs=0.002)


def test_train_on_real_files_stops_at_a_bad_line_or_skips_and_counts_it(tmp_path):
    from tests.helpers import make_yolo_dataset

    root = make_yolo_dataset(tmp_path / "ds", num_train=8, num_val=2)
    label = root / "labels" / "train" / "0003.txt"
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    bad_line = len(label.read_text().splitlines())
    args = ["train", "demo", *SMALL, "--set", f"data.source={root}", "--set", "optim.batch_size=4"]
    out = tmp_path / "run"
    proc = run(*args, "--out", str(out))
    assert proc.returncode == 2
    assert f"0003.txt:{bad_line}" in proc.stderr and "class id 7" in proc.stderr
    assert not (out / "result.json").exists()

    proc = run(*args, "--out", str(out), "--set", "data.skip_bad=true")
    assert proc.returncode == 0, proc.stderr
    assert "skipped lines 1" in proc.stderr  # the dataset summary, printed before training
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["train"]["bad_data"]["skipped_lines"] == 1


def test_fit_reads_an_s3_uri_with_settings_from_the_environment(s3_bucket, tmp_path, monkeypatch):
    from trainer.contract.storage import open_storage

    bucket, settings = s3_bucket
    coco = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 100} for i in range(4)],
        "annotations": [
            {
                "id": k,
                "image_id": k % 4,
                "category_id": 1,
                "bbox": [5, 5, 10 + 7 * k, 12 + 3 * k],
                "iscrowd": 0,
            }
            for k in range(12)
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    open_storage(f"s3://{bucket}/ann", settings).write_bytes("boxes.json", json.dumps(coco).encode())
    monkeypatch.setenv("ANCHOR_OPT_S3_ENDPOINT_URL", settings.endpoint_url)
    monkeypatch.setenv("ANCHOR_OPT_S3_PATH_STYLE", "true")
    monkeypatch.setenv("ANCHOR_OPT_CACHE_DIR", str(tmp_path / "cache"))
    for _ in range(2):  # the second time from the cache
        proc = run("fit", f"s3://{bucket}/ann/boxes.json", "--anchors", "3", "--image-size", "128",
                   "--out", str(tmp_path / "fit.json"), cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp_path / "fit.json").read_text())["dataset"]["boxes"] == 12
    assert (tmp_path / "cache" / "s3" / bucket / "ann" / "boxes.json").is_file()


def test_train_with_workers_runs_on_the_given_ray_cluster(ray_cluster, tmp_path):
    """`--workers 2` on an existing cluster (the session's local Ray, by address, as a cluster's
    head would be named): the same outputs as an in-process run, and status.json SUCCEEDED."""
    out = tmp_path / "run"
    address = ray_cluster.get_runtime_context().gcs_address
    args = ["--workers", "2", "--cpus-per-worker", "1", "--ray-address", address]
    proc = run("train", "demo", "--out", str(out), *SMALL, *args, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "learned" in proc.stdout and "weights.pt" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 2 and result["ddp"] == {"workers": 2, "anchor_rank_spread": 0.0}
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "SUCCEEDED" and status["workers"] == 2
    assert list((out / "checkpoints").glob("checkpoint_*/checkpoint.pt"))


def test_train_on_the_device_asked_for(tmp_path):
    """--device cpu is --set device=cpu: the run trains (in this process) and its config says so."""
    out = tmp_path / "run"
    proc = run("train", "demo", "--out", str(out), *SMALL, "--device", "cpu", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((out / "config.yaml").read_text())["device"] == "cpu"
    assert json.loads((out / "result.json").read_text())["steps"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "gpu"], "String should match pattern '^(auto|cpu|cuda"),
        (["--device", "cuda", "--workers", "1"], "--device is for a run in this process"),
        pytest.param(
            ["--device", "cuda:0"],
            "device=cuda:0: CUDA is not available here",
            marks=pytest.mark.skipif(_has_cuda(), reason="this machine has CUDA"),
        ),
    ],
)
def test_train_bad_device_exits_2_before_writing(tmp_path, args, message):
    proc = run("train", "demo", "--out", str(tmp_path / "x"), *SMALL, *args)
    assert proc.returncode == 2 and message in proc.stderr and "device" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "2", "--cpus-per-worker", "0"], "cpus_per_worker"),
    ],
)
def test_train_bad_worker_options_exit_2(tmp_path, args, message):
    proc = run("train", "demo", "--out", str(tmp_path / "x"), *SMALL, *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_job_names_an_unknown_job_and_store(tmp_path):
    proc = run("run-job", "no-such-job", "--store", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert "no-such-job" in proc.stderr and str(tmp_path) in proc.stderr and "Traceback" not in proc.stderr
    bad = run("run-job", "Bad/Id", "--store", str(tmp_path))
    assert bad.returncode == 2 and "job id" in bad.stderr


def test_version_and_the_built_in_configs_train_offers_exist():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip().startswith("anchor-opt 0.")
    help_text = " ".join(run("train", "--help").stdout.split())
    assert "a built-in one: demo" in help_text and "default" not in help_text.split("built-in one:")[1][:20]


def test_resume_goes_on_from_the_runs_own_config_and_extend_trains_longer(tmp_path):
    """--resume needs no --set repeated; a finished run says so; --extend makes it longer."""
    out = tmp_path / "run"
    assert run("train", "demo", "--out", str(out), *SMALL, "--quiet").returncode == 0
    first = json.loads((out / "result.json").read_text())

    done = run("train", "--resume", "--out", str(out))  # no CONFIG, no --set: the run's config.yaml
    err = " ".join(done.stderr.split())
    assert (
        done.returncode == 0 and "the run is finished (4 of 4 steps, 1 epochs)" in err and "--extend" in err
    )
    assert json.loads((out / "result.json").read_text()) == first  # not re-evaluated, nothing rewritten

    longer = run("train", "--resume", "--out", str(out), "--set", "optim.epochs=2")
    assert longer.returncode == 2 and "add --extend to train it longer" in longer.stderr
    extended = run("train", "--resume", "--extend", "--out", str(out), "--set", "optim.epochs=2", "--quiet")
    assert extended.returncode == 0, extended.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 8 and result["epochs"] == 2
    assert yaml.safe_load((out / "config.yaml").read_text())["optim"]["epochs"] == 2
    shorter = run("train", "--resume", "--extend", "--out", str(out), "--set", "optim.epochs=1")
    assert shorter.returncode == 2 and "give a longer schedule than the run's 2 epochs" in shorter.stderr
    other = run("train", "--resume", "--out", str(out), "--set", "anchors.lr=0.5")
    err = " ".join(other.stderr.split())
    assert (
        other.returncode == 2 and "a resumed run keeps its config; these --set change it: anchors.lr" in err
    )


def test_resume_without_a_checkpoint_says_there_is_nothing_to_resume(tmp_path):
    proc = run("train", "--resume", "--out", str(tmp_path / "never"))
    assert proc.returncode == 2 and "nothing to resume, no checkpoint there" in " ".join(proc.stderr.split())
    proc = run("train", "--extend", "demo", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "give it with --resume" in proc.stderr
    proc = run("train")
    assert proc.returncode == 2 and "give a CONFIG" in proc.stderr
