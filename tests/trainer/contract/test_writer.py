import pytest

from trainer.contract.layout import metrics_key, snapshot_key
from trainer.contract.writer import RunWriter


def test_keys_sort_in_step_order():
    assert snapshot_key(25) < snapshot_key(100) < snapshot_key(12345)
    assert metrics_key(2) < metrics_key(10)


def test_whole_object_writes_and_listing(tmp_path):
    w = RunWriter(tmp_path)
    for step in (100, 25, 0):
        w.write_json(snapshot_key(step), {"step": step, "bad": float("nan")})
    assert [s["step"] for s in w.snapshots()] == [0, 25, 100]
    assert w.read_json(snapshot_key(0))["bad"] is None  # undefined metrics become null
    assert [p.name for p in (tmp_path / "anchors").iterdir() if p.name.startswith(".")] == []


def test_a_failed_write_leaves_the_old_object(tmp_path):
    w = RunWriter(tmp_path)
    w.write_json("result.json", {"ok": 1})
    with pytest.raises(TypeError):
        w.write_json("result.json", {"bad": object()})
    assert w.read_json("result.json") == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_keys_cannot_escape_the_folder(tmp_path):
    with pytest.raises(ValueError, match="invalid key '../x.json'"):
        RunWriter(tmp_path / "run").write_json("../x.json", {})
    assert not (tmp_path / "x.json").exists()


def test_a_run_folder_in_s3_reads_back_like_a_local_one(s3_bucket):
    bucket, settings = s3_bucket
    w = RunWriter(f"s3://{bucket}/runs/one", settings)
    for step in (50, 0):
        w.write_json(snapshot_key(step), {"step": step})
    w.write_json("result.json", {"ok": True})
    assert [s["step"] for s in w.snapshots()] == [0, 50] and w.exists("result.json")
    w.clear()
    assert w.keys("") == []


def test_an_ended_status_is_final_unless_reopened(tmp_path):
    from trainer.contract.spec import JobState

    writer = RunWriter(tmp_path)
    writer.update_status(state=JobState.RUNNING, step=3)
    writer.update_status(state=JobState.CANCELLED, error="cancelled by request")
    late = writer.update_status(state=JobState.RUNNING, step=4)  # a worker still reporting
    assert late.state is JobState.CANCELLED and late.step == 3
    assert writer.status() == late
    again = writer.update_status(reopen=True, state=JobState.RUNNING, error=None)
    assert again.state is JobState.RUNNING and again.error is None


def test_each_start_of_training_is_counted(tmp_path):
    from trainer.contract.spec import JobState

    writer = RunWriter(tmp_path)
    assert writer.start_attempt().attempt == 0  # the first start
    writer.update_status(state=JobState.RUNNING, step=0)  # it died before it reported any step
    again = writer.start_attempt()
    assert again.attempt == 1 and again.starts == 2 and again.state is JobState.RUNNING
    writer.update_status(state=JobState.CANCELLED)
    assert writer.start_attempt().attempt == 1  # an ended run is not started again
