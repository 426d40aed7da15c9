"""What is wrong with a configuration, said the way a person fixes it.

pydantic reports every bad field as a block ("optim.epoch\\n  Extra inputs are not permitted
[type=extra_forbidden, input_value=3, input_type=int]\\n  For further information visit ..."). Here
each becomes one line that names where the value came from (the `--set` that gave it, or the file),
the setting's dotted path, and what is wrong, with the closest real settings for a key that does
not exist:

    --set optim.epoch=3: optim.epoch: no such setting; did you mean optim.epochs?
    job.yaml: anchors.num: Input should be greater than or equal to 1 (got 0)

`schedule_warnings` says what is valid but will surprise: a warm-up as long as the whole run.

Torch-free: the service uses `explain` for the 422s of job bodies, and the warnings at submit.
"""

from __future__ import annotations

import difflib
from typing import get_args

from pydantic import BaseModel, ValidationError

from trainer.config import TrainConfig


def setting_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted setting of `model`, sections included (data, data.augment, data.augment.hflip...)."""
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        out.append(path)
        for kind in (field.annotation, *get_args(field.annotation)):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                out += setting_paths(kind, path + ".")
    return out


def suggestions(path: str, model: type[BaseModel], most: int = 2) -> list[str]:
    """Real settings close to a `path` that is not one: same section first, then anywhere."""
    known = setting_paths(model)
    section = path.rpartition(".")[0]
    near = [k for k in known if k.rpartition(".")[0] == section]
    found = difflib.get_close_matches(path, near, n=most, cutoff=0.8)
    leaf = path.rpartition(".")[2]
    found += [k for k in known if k.rpartition(".")[2] == leaf and k not in found]  # the right key elsewhere
    return found[:most]


def explain(error: dict, model: type[BaseModel]) -> tuple[str, str]:
    """(dotted path, one-line message) of one pydantic error of `model`'s validation."""
    path = ".".join(str(p) for p in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        close = suggestions(path, model)
        message = "no such setting" + (f"; did you mean {' or '.join(close)}?" if close else "")
    elif (
        error.get("type") != "value_error"
        and "input" in error
        and not isinstance(error["input"], dict | list)
    ):
        message += f" (got {error['input']!r})"
    return path or "config", message


def source_of(path: str, overrides: list[str]) -> str | None:
    """The `--set` (the last one) that gave `path` or a section above or below it, if any."""
    for item in reversed(overrides):
        key = item.partition("=")[0].strip()
        if key == path or path.startswith(key + ".") or key.startswith(path + "."):
            return f"--set {item}"
    return None


def describe(exc: ValidationError, model: type[BaseModel], where: str, overrides: list[str] = ()) -> str:
    """Every error of `exc`, one line each, each naming its source (a --set, else `where`)."""
    lines = []
    for error in exc.errors():
        path, message = explain(error, model)
        lines.append(f"{source_of(path, list(overrides)) or where}: {path}: {message}")
    return "\n".join(dict.fromkeys(lines))  # a line once, in order


def schedule_warnings(cfg: TrainConfig, num_train: int | None = None, workers: int = 1) -> list[str]:
    """What in the schedule will surprise: a warm-up (tricks or lr ramp) as long as the whole run.

    `num_train`: the training images (known for the synthetic set; for real data once it is read).
    Returns nothing when the step count cannot be known yet."""
    if num_train is None:
        if not cfg.data.is_synthetic:
            return []
        num_train = cfg.data.synthetic.num_train
    batch = cfg.optim.batch_size * workers
    total = num_train // batch * cfg.optim.epochs
    run = f"the run has {total} steps ({num_train} images // {batch} a step x {cfg.optim.epochs} epochs)"
    out = []
    if cfg.tricks.warmup_steps >= total and (cfg.tricks.soft_assign.enabled or cfg.tricks.clustering.enabled):
        hint = max(1, round(total * 0.4))
        out.append(
            f"tricks.warmup_steps={cfg.tricks.warmup_steps} is not shorter than the run: {run}, so it ends "
            f"in warm-up and never trains with the hard assignment; try tricks.warmup_steps={hint} (40 %)"
        )
    if cfg.optim.lr_warmup_steps >= total:
        out.append(
            f"optim.lr_warmup_steps={cfg.optim.lr_warmup_steps} is not shorter than the run: {run}, so "
            "the learning rate never reaches optim.lr"
        )
    return out
