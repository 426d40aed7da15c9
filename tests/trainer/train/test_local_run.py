import json

import numpy as np
import pytest

from tests.helpers import make_yolo_dataset, small_config
from trainer.config_files import load_config
from trainer.contract.writer import RunWriter
from trainer.data.errors import DataError
from trainer.train.local_run import train

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """Identical anchors, a 128 px input, 160 steps: long enough for the anchors to spread out."""
    cfg = load_config(
        None,
        [
            "anchors.init=identical",
            "data.synthetic.num_train=640",
            "data.synthetic.num_val=32",
            "optim.batch_size=16",
            "optim.epochs=4",
            "tricks.warmup_steps=120",
            "eval.every_epochs=0",
        ],
    )
    out = tmp_path_factory.mktemp("run")
    events = []
    result = train(cfg, out, progress=events.append)
    return cfg, out, result, events


def test_short_run_moves_identical_anchors_toward_the_true_shapes(short_run):
    _, _, result, _ = short_run
    syn = result["synthetic"]
    init, final = result["anchors"]["init"], result["anchors"]["final"]
    assert len({tuple(a) for a in init}) == 1  # all five started equal
    assert len({tuple(a) for a in final}) == 5  # and split up
    assert syn["log_error_final"] < 0.5 * syn["log_error_init"]
    assert result["fit"]["final"]["mean_best_iou"] > result["fit"]["init"]["mean_best_iou"] + 0.1


def test_run_writes_the_storage_layout(short_run):
    cfg, out, result, events = short_run
    writer = RunWriter(out)
    steps = [s["step"] for s in writer.snapshots()]
    assert steps[0] == 0 and steps == sorted(set(steps)) and steps[-1] == result["steps"] == 160
    snap = writer.read_json("anchors/00000160.json")
    assert snap["phase"] == "main" and len(snap["anchors"]) == 5 and sum(snap["assign_counts"]) > 0
    assert set(snap["fit"]) == {"mean_best_iou", "bpr", "anchors_per_target"}
    assert writer.read_json("anchors/00000025.json")["phase"] == "warmup"
    assert writer.keys("metrics/") == [f"metrics/000{e}.json" for e in range(1, 5)]
    last = writer.read_json("metrics/0004.json")
    assert last["eval"]["ap50"] >= 0 and "total" in last["losses"] and last["lr"]["anchors"] > 0
    curve = [p["step"] for e in range(1, 5) for p in writer.read_json(f"metrics/000{e}.json")["loss_curve"]]
    assert curve == list(range(25, 161, 25))  # an even grid across epoch ends
    assert json.loads((out / "result.json").read_text()) == result
    for key in result["artifacts"].values():
        assert (out / key).exists(), key
    assert (out / "artifacts/anchors.png").read_bytes().startswith(PNG)
    boxes = np.load(out / "boxes.npy")  # for pictures drawn without torch (the service)
    assert boxes.dtype == np.float32 and boxes.shape[1] == 2 and len(boxes) > 640
    assert len(json.loads((out / "dataset.json").read_text())["true_shapes"]) == 5
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 4


def test_resume_from_a_finished_run_changes_nothing(tmp_path):
    cfg = small_config("optim.epochs=1", "eval.every_epochs=0")
    first = train(cfg, tmp_path)
    again = train(cfg, tmp_path, resume=True)
    assert again["anchors"] == first["anchors"] and again["steps"] == first["steps"]


def test_a_run_on_real_image_files_with_loader_workers(tmp_path):
    root = make_yolo_dataset(tmp_path / "ds", num_train=16, num_val=4)
    cfg = small_config(f"data.source={root}", "data.workers=2", "optim.batch_size=4", "anchors.num=3")
    out = tmp_path / "run"
    result = train(cfg, out)
    assert result["synthetic"] is None and result["steps"] == 8
    assert {"ap", "ap50", "voc07_ap50", "voc_ap50", "per_class_ap50", "per_class_voc_ap50"} <= set(
        result["eval"]
    )
    assert len(result["eval"]["per_class_ap50"]) == 3
    dataset = RunWriter(out).read_json("dataset.json")
    assert dataset["class_names"] == ["rectangle", "ellipse", "frame"]
    assert dataset["train"]["images"] == 16 and dataset["val"]["images"] == 4
    assert (out / "artifacts/anchors.png").read_bytes().startswith(PNG)
    # Augmentation is seeded per sample, so worker processes change nothing.
    in_process = cfg.model_copy(update={"data": cfg.data.model_copy(update={"workers": 0})})
    again = train(in_process, tmp_path / "again")
    assert again["anchors"] == result["anchors"] and again["eval"] == result["eval"]


def test_a_run_on_an_s3_dataset_configured_from_the_environment(s3_bucket, tmp_path, monkeypatch):
    from trainer.contract.storage import open_storage

    bucket, settings = s3_bucket
    root = make_yolo_dataset(tmp_path / "ds", num_train=8, num_val=2)
    store = open_storage(f"s3://{bucket}/shapes", settings)
    for path in (p for p in root.rglob("*") if p.is_file()):
        store.write_bytes(path.relative_to(root).as_posix(), path.read_bytes())
    monkeypatch.setenv("ANCHOR_OPT_S3_ENDPOINT_URL", settings.endpoint_url)
    monkeypatch.setenv("ANCHOR_OPT_S3_PATH_STYLE", "true")
    monkeypatch.setenv("ANCHOR_OPT_CACHE_DIR", str(tmp_path / "cache"))
    cfg = small_config(f"data.source=s3://{bucket}/shapes", "optim.batch_size=4", "optim.epochs=1")
    events = []
    from trainer.contract.storage import StorageSettings

    with pytest.raises(DataError, match="an s3:// source needs the run's storage settings"):
        train(cfg, tmp_path / "run", progress=events.append)  # nothing reads the environment for it
    events.clear()
    # What `anchor-opt train` does: the settings read from the environment once, and passed down.
    result = train(cfg, tmp_path / "run", progress=events.append, settings=StorageSettings())
    assert result["steps"] == 2 and result["eval"]["ap50"] >= 0
    fetched = [e for e in events if e["kind"] == "fetch"]
    assert fetched and fetched[-1]["done"] == fetched[-1]["total"] > 0  # a bar can follow the download
    assert events.index(fetched[-1]) < [e["kind"] for e in events].index("start")
    assert (tmp_path / "cache" / "s3" / bucket / "shapes" / "data.yaml").is_file()
    assert RunWriter(tmp_path / "run").read_json("dataset.json")["train"]["images"] == 8


def test_outputs_and_resume_in_s3(s3_bucket, tmp_path):
    from trainer.contract.storage import open_storage

    bucket, settings = s3_bucket
    store = open_storage(f"s3://{bucket}/runs/r1", settings)
    cfg = small_config("optim.epochs=1", "eval.every_epochs=0")
    first = train(cfg, store)
    keys = [o.key for o in store.list("")]
    assert {
        "result.json",
        "config.yaml",
        "dataset.json",
        "checkpoints/last.pt",
        "artifacts/anchors.png",
    } <= set(keys)
    assert train(cfg, store, resume=True)["anchors"] == first["anchors"]  # restored from the S3 checkpoint


def test_a_warm_start_from_a_finished_runs_weights_loads_them_and_says_so(short_run, tmp_path):
    """model.pretrained: a finished run's weights.pt; the head is skipped for another anchor count."""
    cfg, out, _, _ = short_run
    weights = out / "artifacts" / "weights.pt"
    base = ["data.synthetic.num_train=64", "data.synthetic.num_val=8", "optim.batch_size=16"]
    base += ["optim.epochs=1"]
    base += [f"model.pretrained={weights}", "optim.freeze_pretrained_epochs=1", "eval.every_epochs=0"]
    events: list[dict] = []
    result = train(load_config(None, base), tmp_path / "same", progress=events.append)
    assert result["pretrained"]["kind"] == "anchor-opt weights.pt" and result["pretrained"]["loaded"] > 0
    assert "anchors.log_wh" in result["pretrained"]["skipped"]  # the anchors come from anchors.init
    lines = events[0]["pretrained"]
    assert lines[0].startswith(f"pretrained: {weights}") and "loaded" in lines[1]

    other = train(load_config(None, [*base, "anchors.num=3"]), tmp_path / "other")
    skipped = other["pretrained"]["skipped"]
    assert any(k.startswith("head.") for k in skipped) and not any(k.startswith("backbone.") for k in skipped)
