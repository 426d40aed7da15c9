"""Reading a configuration: a YAML file (or the defaults), `--set key=value` overrides on top,
validated as a TrainConfig (or a JobSpec), with one line per problem (trainer.config_errors).

Importable without torch, like trainer.config: the service reads job specs with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from trainer.config import TrainConfig
from trainer.config_errors import describe
from trainer.safe_yaml import parse_yaml, read_yaml_mapping


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML, so 3, 0.1, true, [1, 2] work)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {item!r}: expected key=value, e.g. anchors.init=identical")
    return key.strip().split("."), parse_yaml(raw, f"--set {item!r}") if raw.strip() else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Returns a copy of `data` with each dotted `key=value` set (validation happens afterwards)."""
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"--set {item!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return out


_M = TypeVar("_M", bound=BaseModel)


def read_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """The YAML mapping at `path` (or none) with `--set` overrides applied, not yet validated: what
    `load_config` validates, and what `anchor-opt submit` sends. The file is read once, through the
    safe loader (trainer.safe_yaml): duplicate keys, alias bombs, a folder or a missing file are a
    ValueError naming the file."""
    data = read_yaml_mapping(path) if path is not None else {}
    return apply_overrides(data, overrides or [])


def validate_config(
    data: dict[str, Any], model: type[_M] = TrainConfig, where: str = "config", overrides: list[str] = ()
) -> _M:
    """`data` as a `model`; ValueError with a line per offending field, each naming where its value
    came from (`where`, the file, or the `--set` in `overrides` that gave it; trainer.config_errors)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(describe(exc, model, where, overrides)) from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, model: type[_M] = TrainConfig
) -> _M:
    """Reads a YAML config (or the defaults), applies `--set` overrides, validates the result as
    `model` (a TrainConfig, or a trainer.contract.spec.JobSpec for a job).

    Raises ValueError naming the file and the offending field.
    """
    data = read_config(path, overrides)
    return validate_config(data, model, str(path) if path is not None else "defaults", overrides or [])
