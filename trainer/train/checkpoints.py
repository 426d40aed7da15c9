"""Exact checkpoints: everything that shapes the rest of a run in one object, restored bit for bit,
and loaded with `torch.load(weights_only=True)` so a checkpoint in the store cannot run code.

A checkpoint restores on any device, whatever device wrote it: it is loaded onto the CPU
(`map_location`, so tensors saved from a GPU load on a machine without one, and the RNG states are
the CPU tensors torch.set_rng_state takes), then copied into the model's parameters and the
optimizer's state on the device the model is on. The config's `device` is not compared: where a
run trains is not what it computes (on another device it continues from the same state, though not
bit for bit: GPU and CPU kernels round differently, and bf16 autocast is on on GPUs).

A checkpoint restores into the config it was made with, or the same with a longer `optim.epochs`:
an extended run (`anchor-opt train --resume --extend`) goes on from the step reached with the
longer schedule's lr there; nothing else may differ.
"""

from __future__ import annotations

import io
import pickle
import random

import numpy as np
import torch

from trainer.config import TrainConfig
from trainer.train.state import TrainState

# 2: RNG states as plain lists and numbers, loaded with weights_only=True (1 held numpy arrays).
CHECKPOINT_VERSION = 2
# Config fields a checkpoint need not match: where the run executes, not what it trains.
_PLACEMENT = {"device"}


def _rng_state() -> dict:
    """Every global RNG's state as a tensor or plain lists and numbers, so that the checkpoint loads
    with `torch.load(weights_only=True)` (numpy's state holds an ndarray, which would need pickle)."""
    bit_generator, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(bit_generator),
            "key": [int(k) for k in key],  # 624 uint32 words of MT19937
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n, p = s["numpy"], s["python"]
    key = np.asarray(n["key"], dtype=np.uint32)
    np.random.set_state((n["bit_generator"], key, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def checkpoint_bytes(state: TrainState) -> bytes:
    """Everything that shapes the rest of the run: network, anchors, optimizer and scheduler state,
    the step (so the warm-up position and data order), RNGs and the config, as one object to store.
    Only tensors, containers and plain values: `restore_checkpoint` loads it with weights_only=True."""
    payload = {
        "version": CHECKPOINT_VERSION,
        "step": state.step,
        "world_size": state.world_size,  # the step count's meaning: steps per epoch depend on it
        "config": state.cfg.model_dump(mode="json"),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "init_anchors": state.init_anchors,
        "anchors_px": state.model.anchors.wh().detach(),  # readable without rebuilding the model
        "warmup": {"steps": state.cfg.tricks.warmup_steps, "in_warmup": state.in_warmup},
        "rng": _rng_state(),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def restore_checkpoint(state: TrainState, data: bytes, where: str = "checkpoint") -> TrainState:
    """Restores `state` (built from the same config) in place from `checkpoint_bytes` output.
    `where` names the checkpoint in errors (its path or URI)."""
    payload = _load_payload(data, where)
    saved = TrainConfig.model_validate(payload["config"]).model_dump(exclude=_PLACEMENT)
    now = state.cfg.model_dump(exclude=_PLACEMENT)
    saved_epochs, now_epochs = saved["optim"].pop("epochs"), now["optim"].pop("epochs")
    if saved != now:
        diff = _config_diff(saved, now)
        raise ValueError(f"{where}: checkpoint was made with a different config ({'; '.join(diff[:5])})")
    if now_epochs < saved_epochs:
        raise ValueError(
            f"{where}: checkpoint was made for optim.epochs={saved_epochs}; a run can be extended, not "
            f"shortened (optim.epochs={now_epochs})"
        )
    saved_world = payload.get("world_size", 1)
    if saved_world != state.world_size:
        raise ValueError(
            f"{where}: checkpoint was made by {saved_world} worker(s), this run has {state.world_size}; "
            "resume with the same number of workers"
        )
    state.model.load_state_dict(payload["model"])  # copies onto the parameters' device
    state.optimizer.load_state_dict(payload["optimizer"])  # casts each param's state to its device
    state.scheduler.load_state_dict(payload["scheduler"])
    # The lr of the step reached, from this run's schedule: the same as saved, unless the run was
    # extended (a longer optim.epochs stretches the cosine, or moves nothing of a step schedule's).
    for group, base, factor in zip(
        state.optimizer.param_groups, state.scheduler.base_lrs, state.scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base * factor(payload["step"])
    state.init_anchors = payload["init_anchors"]
    state.step = payload["step"]
    _set_rng_state(payload["rng"])
    return state


def _load_payload(data: bytes, where: str) -> dict:
    """The checkpoint's contents, unpickled with `weights_only=True`: tensors, containers and plain
    values only, so a checkpoint someone else wrote into the store cannot run code on a worker."""
    again = "resuming is not possible: start the run again (anchor-opt train --fresh, or submit it again)"
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{where}: refused: it holds objects other than tensors and plain values, and loading them could "
            f"run code ({reason[:200]}). Checkpoints of version 1 (numpy RNG state) are refused so too; "
            f"{again}"
        ) from None
    except Exception as exc:  # a truncated or foreign file: the zip reader's RuntimeError, EOFError, ...
        reason = f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{where}: not a readable checkpoint ({reason[:200]}); {again}") from None
    version = payload.get("version") if isinstance(payload, dict) else None
    if version != CHECKPOINT_VERSION:
        raise ValueError(f"{where}: checkpoint version {version} is not {CHECKPOINT_VERSION}; {again}")
    return payload


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} in checkpoint, {vb!r} now")
    return out
