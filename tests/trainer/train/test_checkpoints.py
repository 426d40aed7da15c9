"""trainer.train.checkpoints: exact resume, and only tensors and plain values."""

import io
import random

import numpy as np
import pytest
import torch

from tests.helpers import small_config
from tests.trainer.train.runs import fresh, run_until
from trainer.train.checkpoints import CHECKPOINT_VERSION, checkpoint_bytes, restore_checkpoint
from trainer.train.state import build_optimizer, lr_factors


def test_checkpoint_mid_warmup_restores_exactly(tmp_path):
    # 8 steps per epoch, warm-up 6 steps: stop at step 4 (mid warm-up, mid epoch), restore, go on
    # across the end of warm-up and an epoch boundary; compare with a run that never stopped.
    cfg = small_config("tricks.warmup_steps=6")
    total = 12
    straight, data = fresh(cfg)
    run_until(straight, data, total)

    first, data = fresh(cfg)
    run_until(first, data, 4)
    assert first.in_warmup
    (tmp_path / "ck.pt").write_bytes(checkpoint_bytes(first))
    torch.manual_seed(12345)  # disturb the global RNG: the checkpoint must restore it

    resumed, data = fresh(cfg)
    restore_checkpoint(resumed, (tmp_path / "ck.pt").read_bytes(), "ck.pt")
    assert resumed.step == 4 and resumed.in_warmup
    run_until(resumed, data, total)

    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    sa, sb = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    for key, st in sa["state"].items():
        for field, value in st.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb["state"][key][field])), (key, field)
    assert straight.scheduler.get_last_lr() == resumed.scheduler.get_last_lr()


def test_checkpoint_from_another_config_is_refused(tmp_path):
    state, _ = fresh(small_config())
    (tmp_path / "ck.pt").write_bytes(checkpoint_bytes(state))
    other, _ = fresh(small_config("anchors.lr=0.5"))
    with pytest.raises(ValueError, match="anchors.lr"):
        restore_checkpoint(other, (tmp_path / "ck.pt").read_bytes(), "ck.pt")


def test_a_checkpoint_restores_into_a_longer_schedule_with_its_lr_and_never_a_shorter_one():
    """--extend: optim.epochs may grow; the lr at the step reached is then the longer cosine's."""
    state, data = fresh(small_config())  # 2 epochs of 8 steps
    run_until(state, data, 8)
    saved = checkpoint_bytes(state)
    longer, _ = fresh(small_config("optim.epochs=4"))
    restore_checkpoint(longer, saved)
    assert longer.step == 8 and longer.total_steps == 32
    factors = lr_factors(longer.cfg, 8, longer.optimizer.param_groups)
    for group, base, factor in zip(
        longer.optimizer.param_groups, longer.scheduler.base_lrs, factors, strict=True
    ):
        assert group["lr"] == pytest.approx(base * factor(8))
    assert (
        longer.optimizer.param_groups[0]["lr"] > state.optimizer.param_groups[0]["lr"]
    )  # further from the end
    same, _ = fresh(small_config())
    restore_checkpoint(same, saved)  # unchanged: the lr it had
    assert [g["lr"] for g in same.optimizer.param_groups] == [g["lr"] for g in state.optimizer.param_groups]
    shorter, _ = fresh(small_config("optim.epochs=1"))
    with pytest.raises(ValueError, match="can be extended, not shortened"):
        restore_checkpoint(shorter, saved)


class RunsCode:
    """What someone able to write to the store could put in a checkpoint: unpickling it runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _saved(payload: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _contents(state) -> dict:
    return torch.load(io.BytesIO(checkpoint_bytes(state)), weights_only=False)  # our own: trusted


def test_checkpoints_hold_only_tensors_and_plain_values():
    """Finding 14 of issue 14: the RNG states (numpy's ndarray) needed weights_only=False."""
    state, _ = fresh(small_config())
    payload = torch.load(io.BytesIO(checkpoint_bytes(state)), weights_only=True)
    assert payload["version"] == CHECKPOINT_VERSION == 2 and len(payload["rng"]["numpy"]["key"]) == 624


def test_every_global_rng_comes_back_exactly():
    state, _ = fresh(small_config())
    np.random.randn(), random.gauss(0, 1)  # each now holds a cached second gaussian: part of the state
    data = checkpoint_bytes(state)

    def draws():
        numpy = [*np.random.rand(2), np.random.randn()]
        return [*torch.rand(2).tolist(), *numpy, random.random(), random.gauss(0, 1)]

    expected = draws()
    restore_checkpoint(state, data, "ck.pt")
    assert draws() == expected


def test_a_checkpoint_whose_pickle_runs_code_is_refused_without_running_it(tmp_path):
    state, _ = fresh(small_config())
    marker = tmp_path / "ran"
    evil = _contents(state) | {"model": {"backbone.weight": RunsCode(marker)}}
    try:
        restore_checkpoint(state, _saved(evil), "evil.pt")
        error = "restored"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    assert not marker.exists(), "restoring the checkpoint ran the code in its pickle"
    assert error.startswith("ValueError: evil.pt: refused: it holds objects other than tensors"), error


def test_an_older_or_broken_checkpoint_is_a_clear_error_naming_it(tmp_path):
    state, _ = fresh(small_config())
    payload = _contents(state)
    old_rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    v1 = payload | {"version": 1, "rng": old_rng}  # what version 1 wrote
    with pytest.raises(ValueError, match=r"v1.pt: refused(.|\n)*version 1(.|\n)*start the run again"):
        restore_checkpoint(state, _saved(v1), "v1.pt")
    with pytest.raises(ValueError, match="old.pt: checkpoint version 1 is not 2"):
        restore_checkpoint(state, _saved(payload | {"version": 1}), "old.pt")
    with pytest.raises(ValueError, match="cut.pt: not a readable checkpoint"):
        restore_checkpoint(state, checkpoint_bytes(state)[:1000], "cut.pt")


def _written_on_cuda(state, monkeypatch) -> bytes:
    """The state's checkpoint as a GPU run writes it: every tensor's storage tagged cuda:0 (what
    torch.save records for a tensor on a GPU), so loading it without map_location needs CUDA."""
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        data = checkpoint_bytes(state)
    with pytest.raises(RuntimeError, match="CUDA"):  # what torch.load does with it by default here
        torch.load(io.BytesIO(data), weights_only=True)
    return data


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_checkpoint_written_on_a_gpu_restores_on_the_cpu(monkeypatch):
    cfg = small_config()
    first, data = fresh(cfg)
    run_until(first, data, 3)
    resumed, _ = fresh(small_config("device=cpu"))  # resumed with another device: the same run
    restore_checkpoint(resumed, _written_on_cuda(first, monkeypatch), "ck.pt")
    assert resumed.step == 3
    for (name, a), b in zip(
        first.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert b.device.type == "cpu" and torch.equal(a, b), name
    for st in resumed.optimizer.state.values():
        assert all(v.device.type == "cpu" for v in st.values() if isinstance(v, torch.Tensor))


def test_the_optimizer_state_lands_on_the_device_of_its_parameters():
    """Loaded onto the CPU, the moments follow the parameters to their device ('meta' stands for a
    GPU here); the RNG states stay CPU tensors (torch.set_rng_state takes no other)."""
    first, data = fresh(small_config())
    run_until(first, data, 2)
    elsewhere, _ = fresh(small_config())
    elsewhere.model.to("meta")  # new parameter objects (CPU to meta is no in-place move): a new optimizer
    elsewhere.optimizer = build_optimizer(elsewhere.model, elsewhere.cfg)
    factors = lr_factors(elsewhere.cfg, elsewhere.total_steps, elsewhere.optimizer.param_groups)
    elsewhere.scheduler = torch.optim.lr_scheduler.LambdaLR(elsewhere.optimizer, factors)
    restore_checkpoint(elsewhere, checkpoint_bytes(first), "ck.pt")
    moments = [v for st in elsewhere.optimizer.state.values() for k, v in st.items() if k != "step"]
    assert moments and all(v.device.type == "meta" for v in moments)
    assert elsewhere.step == 2 and elsewhere.init_anchors.device.type == "cpu"
