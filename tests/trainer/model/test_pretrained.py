"""load_pretrained: state dicts, a job's weights.pt and darknet files, what the report says, pickles
refused, and the file read only from where the job was admitted (local and S3)."""

from __future__ import annotations

import io
import os

import pytest
import torch

from tests.helpers import small_config
from trainer.model.darknet_weights import write_darknet_weights
from trainer.model.detector import Detector
from trainer.model.pretrained import ANCHORS_KEY, PretrainedError, load_pretrained


def tiny(classes: int = 3, seed: int = 0, *overrides: str) -> Detector:
    torch.manual_seed(seed)
    cfg = small_config("anchors.init=identical", "anchors.size=10", *overrides)
    model = Detector(cfg, torch.full((5, 2), 10.0 + seed), classes)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point() and key != ANCHORS_KEY:
                tensor.normal_(0, 0.1)
    return model


def saved(tmp_path, obj, name: str = "weights.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_a_state_dict_loads_every_matching_tensor_but_the_anchors(tmp_path):
    source, target = tiny(seed=1), tiny(seed=2)
    anchors = target.anchors.log_wh.detach().clone()
    path = saved(tmp_path, source.state_dict())
    report = load_pretrained(target, str(path))
    assert report.kind == "state dict"
    want, have = source.state_dict(), target.state_dict()
    assert set(report.loaded) == set(want) - {ANCHORS_KEY} and list(report.skipped) == [ANCHORS_KEY]
    assert all(torch.equal(want[k], have[k]) for k in report.loaded)
    assert torch.equal(target.anchors.log_wh, anchors)  # the config's anchors stay
    names = {id(p) for p in report.parameters(target)}
    assert names == {id(p) for n, p in target.named_parameters() if n != ANCHORS_KEY}
    text = str(report)
    assert text.startswith(f"pretrained: {path} (state dict)\n  loaded ")
    assert "not loaded: anchors: kept as anchors.init set them" in text


def test_a_jobs_weights_pt_is_a_warm_start(tmp_path):
    from trainer.artifacts.exports import weights_bytes

    source = tiny(seed=1)
    path = tmp_path / "artifacts" / "weights.pt"
    path.parent.mkdir()
    path.write_bytes(weights_bytes(source, small_config(), ["a", "b", "c"]))
    target = tiny(seed=2)
    report = load_pretrained(target, f"file://{path}")
    assert report.kind == "anchor-opt weights.pt" and len(report.loaded) == len(source.state_dict()) - 1
    assert torch.equal(target.head.pred.weight, source.head.pred.weight)


@pytest.mark.parametrize("wrap", ["model", "state_dict", "module."])
def test_wrapped_state_dicts(tmp_path, wrap):
    source = tiny(seed=1)
    state = source.state_dict()
    obj = {f"module.{k}": v for k, v in state.items()} if wrap == "module." else {wrap: state, "step": 3}
    report = load_pretrained(tiny(seed=2), str(saved(tmp_path, obj)))
    assert len(report.loaded) == len(state) - 1 and not report.unused


def test_the_head_keeps_its_init_when_the_classes_differ(tmp_path):
    source, target = tiny(classes=3, seed=1), tiny(classes=2, seed=2)
    head = {k: v.clone() for k, v in target.state_dict().items() if k.startswith("head.")}
    report = load_pretrained(target, str(saved(tmp_path, source.state_dict())))
    assert not any(k.startswith("head.") for k in report.loaded)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in head.items())
    assert any(k.startswith("backbone.") for k in report.loaded)
    reason = report.skipped["head.pred.weight"]
    assert "classes or anchors differ" in reason
    assert "[40, 64, 1, 1] in the file, [35, 64, 1, 1] here" in reason  # A x (5 + C): 5 x 8, 5 x 7
    wanted = "  not loaded: head.pred, head.wh_norm: the head does not fit"
    assert any(line.startswith(wanted) for line in report.lines())


def test_other_shapes_and_extra_names_are_listed(tmp_path):
    state = tiny(seed=1).state_dict()
    state["backbone.layers.0.0.weight"] = torch.zeros(1, 3, 3, 3)
    state["extra.weight"] = torch.zeros(2)
    del state["backbone.layers.1.1.bias"]
    report = load_pretrained(tiny(seed=2), str(saved(tmp_path, state)))
    assert report.skipped["backbone.layers.0.0.weight"].startswith("shape [1, 3, 3, 3] in the file")
    assert report.skipped["backbone.layers.1.1.bias"] == "not in the file"
    assert report.unused == ["extra.weight"]
    text = str(report)
    assert "not loaded: backbone.layers.0.0: the shape differs" in text
    assert "in the file, not in this model (1): extra" in text


class Payload:
    """An object a pickle would rebuild by calling os.system: what weights_only exists to refuse."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_objects_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = saved(tmp_path, {"model": tiny().state_dict(), "evil": Payload(marker)}, "evil.pt")
    with pytest.raises(PretrainedError, match=rf"^model\.pretrained: {path}: refused: .*weights_only=True"):
        load_pretrained(tiny(), str(path))
    assert not marker.exists()


def test_torch_files_that_hold_no_state_dict(tmp_path):
    with pytest.raises(PretrainedError, match=r"^model\.pretrained: .*list\.pt: a torch file, but no state"):
        load_pretrained(tiny(), str(saved(tmp_path, [1, 2, 3], "list.pt")))
    broken = tmp_path / "broken.pt"
    broken.write_bytes((tmp_path / "list.pt").read_bytes()[:30])
    with pytest.raises(PretrainedError, match=r"^model\.pretrained: .*broken\.pt: not a readable torch file"):
        load_pretrained(tiny(), str(broken))


def test_files_that_are_not_there(tmp_path):
    with pytest.raises(PretrainedError, match=r"^model\.pretrained: .*nope\.pt: no such file"):
        load_pretrained(tiny(), str(tmp_path / "nope.pt"))
    with pytest.raises(PretrainedError, match=r"^model\.pretrained: .*unsupported storage URI"):
        load_pretrained(tiny(), "https://pjreddie.com/media/files/darknet19_448.conv.23")
    with pytest.raises(PretrainedError, match=r"^model\.pretrained: .*needs the run's storage settings"):
        load_pretrained(tiny(), "s3://bucket/weights.pt")


def test_a_darknet_backbone_file_and_its_report(tmp_path):
    cfg = small_config("model.backbone=darknet19", "anchors.init=identical", "anchors.size=10")
    model = Detector(cfg, torch.full((5, 2), 10.0), 3)
    path = tmp_path / "darknet19_448.conv.3"
    with open(path, "wb") as f:
        write_darknet_weights(model, f, upto=3)  # any prefix of the layers is a valid file
    report = load_pretrained(model, str(path))
    assert report.kind == "darknet weights 0.2.0, 0 images seen"
    layers = {k.rsplit(".", 2)[0] for k in report.loaded}
    assert layers == {"backbone.stage1.0", "backbone.stage1.2", "backbone.stage1.4"}
    text = report.lines()
    assert text[1] == (
        "  loaded 15 tensors: backbone.stage1.0.1, backbone.stage1.0.0, backbone.stage1.2.1, "
        "backbone.stage1.2.0, backbone.stage1.4.1, backbone.stage1.4.0"
    )
    rest = "backbone.fuse.0, backbone.fuse.1, head.pred: not in the file (it holds conv layers 0-2)"
    assert any(rest in t for t in text)
    assert any("head.wh_norm: no darknet counterpart" in t for t in text)
    assert "  note: the file held 3 of the model's 23 darknet conv layers" in text
    assert not any(k.endswith("num_batches_tracked") for k in report.skipped)
    bad = tmp_path / "cut.weights"
    bad.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(PretrainedError, match=rf"^model\.pretrained: {bad}: ends .* into conv layer 2"):
        load_pretrained(model, str(bad))


def test_confined_to_the_admitted_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir(), outside.mkdir()
    state = tiny(seed=1).state_dict()
    inside = saved(root, state)
    saved(outside, state, "theirs.pt")
    (root / "link.pt").symlink_to(outside / "theirs.pt")
    assert load_pretrained(tiny(), str(inside), allowed_root=str(root)).loaded
    for path in (outside / "theirs.pt", root / "link.pt"):
        with pytest.raises(PretrainedError, match=rf"^model\.pretrained: {path} resolves to .*elsewhere"):
            load_pretrained(tiny(), str(path), allowed_root=str(root))
    with pytest.raises(PretrainedError, match="one is an s3:// URI and the other a local path"):
        load_pretrained(tiny(), str(inside), allowed_root="s3://bucket/weights")
    with pytest.raises(PretrainedError, match=r"^model\.pretrained: .*root: (not a regular|cannot open)"):
        load_pretrained(tiny(), str(root), allowed_root=str(tmp_path))


def test_from_s3_through_the_cache_and_within_its_root(s3_bucket):
    from trainer.contract.storage import open_storage

    bucket, settings = s3_bucket
    buf = io.BytesIO()
    torch.save(tiny(seed=1).state_dict(), buf)
    open_storage(f"s3://{bucket}", settings).write_bytes("jobs/abc/artifacts/weights.pt", buf.getvalue())
    uri = f"s3://{bucket}/jobs/abc/artifacts/weights.pt"
    report = load_pretrained(tiny(), uri, settings, allowed_root=f"s3://{bucket}/jobs")
    assert report.source == uri and len(report.loaded) == len(tiny().state_dict()) - 1
    assert (settings.cache_dir / "s3" / bucket / "jobs/abc/artifacts/weights.pt").is_file()
    with pytest.raises(PretrainedError, match=r"is outside s3://.*/jobs/abc-other, the root it was admitted"):
        load_pretrained(tiny(), uri, settings, allowed_root=f"s3://{bucket}/jobs/abc-other")
    with pytest.raises(PretrainedError, match=r"^model\.pretrained: s3://.*/missing\.pt: no such object"):
        load_pretrained(tiny(), f"s3://{bucket}/jobs/missing.pt", settings)
