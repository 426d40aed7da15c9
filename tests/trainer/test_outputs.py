import pytest

from trainer.outputs import RunWriter, metrics_key, snapshot_key


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
    with pytest.raises(ValueError, match="escapes"):
        RunWriter(tmp_path / "run").write_json("../x.json", {})
