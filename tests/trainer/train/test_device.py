"""trainer.train.device: which device a run in one process takes, when it autocasts, and batches to it.

No GPU here: CUDA's presence is faked with monkeypatch where a test needs it."""

import pytest
import torch
from torch.utils.data import DataLoader

from tests.helpers import small_config
from tests.trainer.train.runs import fresh
from trainer.train.batches import epoch_batches
from trainer.train.device import resolve_device, to_device, uses_amp
from trainer.train.loop import Session
from trainer.train.step import train_step


def _cuda(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_auto_is_the_cpu_without_cuda_and_the_first_gpu_with_it(monkeypatch):
    _cuda(monkeypatch, 0)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    _cuda(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")  # asked for: the CPU even with a GPU


def test_cuda_without_cuda_is_an_error_naming_the_key(monkeypatch):
    _cuda(monkeypatch, 0)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=rf"^device={name}: CUDA is not available here"):
            resolve_device(name)


def test_a_gpu_beyond_the_count_is_an_error_naming_the_key(monkeypatch):
    _cuda(monkeypatch, 1)
    with pytest.raises(ValueError, match=r"^device=cuda:3: this machine has 1 CUDA device\(s\)"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("name", ["gpu", "cuda:", "CPU", "cuda:x", ""])
def test_other_names_are_refused_naming_the_key(name):
    with pytest.raises(ValueError, match="^device="):
        resolve_device(name)


def test_the_config_key_accepts_what_resolve_device_does():
    assert small_config().device == "auto"
    for name in ("auto", "cpu", "cuda", "cuda:0", "cuda:15"):
        assert small_config(f"device={name}").device == name
    for name in ("gpu", "cuda:", "cuda:123", "mps"):
        with pytest.raises(ValueError, match="device"):
            small_config(f"device={name}")


def test_bf16_autocast_on_cuda_only_and_the_session_follows_the_rule():
    assert uses_amp(torch.device("cuda", 0)) and not uses_amp(torch.device("cpu"))
    assert Session().device == torch.device("cpu") and not Session().amp
    gpu = Session(device=torch.device("cuda", 0))
    assert gpu.device == torch.device("cuda", 0) and gpu.amp


@pytest.mark.parametrize("amp", [False, True])
def test_the_step_autocasts_as_the_state_says_and_trains(amp):
    """A CPU state with amp forced on runs its forward pass in bf16 (CPU autocast) and still trains."""
    state, data = fresh(small_config())
    state.amp = amp
    seen = []
    first_conv = next(m for m in state.model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    before = [p.detach().clone() for p in state.model.parameters()]
    images, targets = next(iter(epoch_batches(state, data)))
    terms, _ = train_step(state, images, targets)
    assert seen == [torch.bfloat16 if amp else torch.float32]
    assert state.step == 1 and torch.isfinite(torch.tensor(terms["total"]))
    assert any(not torch.equal(a, p) for a, p in zip(before, state.model.parameters(), strict=True))


def test_batches_reach_the_device_and_the_cpu_session_leaves_them_as_they_are():
    batches = [(torch.zeros(2, 3), torch.ones(4, 6))]
    moved = list(to_device(batches, torch.device("meta")))  # another device than the batches'
    assert [t.device.type for t in moved[0]] == ["meta", "meta"] and moved[0][1].shape == (4, 6)
    assert Session().prepare_loader(batches) is batches  # CPU: no copy, no wrapper


def test_a_dataloader_pins_its_batches_for_cuda_only():
    cpu_loader, cuda_loader = DataLoader([]), DataLoader([])
    assert list(to_device(cpu_loader, torch.device("meta"))) == []
    assert not cpu_loader.pin_memory
    with pytest.warns(UserWarning, match="pin_memory"):  # no accelerator here: torch says so, and goes on
        assert list(to_device(cuda_loader, torch.device("cuda", 0))) == []
    assert cuda_loader.pin_memory
