"""model.pretrained: start a Detector from a file, and say what was loaded and what was not.

    report = load_pretrained(model, cfg.model.pretrained, settings, cfg.model.pretrained_allowed_root)
    print(report)                     # what was loaded, what was not and why
    report.parameters(model)          # the loaded parameters, e.g. for their own learning rate

Three kinds of file, told apart by their first bytes (docs/pretrained.md):
- darknet binary weights (darknet19_448.conv.23, yolo-voc.weights): trainer.model.darknet_weights;
- a PyTorch state dict, bare or under "model" / "state_dict" (a checkpoint), `module.` prefixes of
  DDP stripped;
- this project's artifacts/weights.pt (a warm start from a finished job), whose "model" is one.

Torch files are read with `torch.load(weights_only=True)`: a file from elsewhere never runs code.
A state dict loads every tensor whose name and shape match the model's; when the head's shapes
differ (other classes or anchors) the whole head keeps its init. The anchors are never loaded: they
are what `anchors.init` computes (the point of this project is to learn them from there), and a
warm start that should keep a finished job's anchors gives them as `anchors.init: list`.

The file is read from a local path, a file:// URI, or an s3:// URI fetched into the run's cache
(trainer.contract.storage), never from anywhere else. With `allowed_root` (the root the service
admitted it under, `model.pretrained_allowed_root`) the file opened must resolve inside it, symlinks
included, and never into the S3 mirror cache (trainer.data.root does the check on the open file).
Every error is a PretrainedError that starts with `model.pretrained:` and names the file.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import torch
from torch import Tensor, nn

from trainer.model.darknet_weights import DarknetFormatError, read_darknet_weights

FIELD = "model.pretrained"
ANCHORS_KEY = "anchors.log_wh"
ANCHORS_REASON = (
    "kept as anchors.init set them: a weights file never overrides the anchors (to keep a finished "
    "job's, give its artifacts/anchors.json values as anchors.init: list)"
)
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # a zip (torch.save since 1.6) or a legacy pickle


class PretrainedError(ValueError):
    """The pretrained file cannot be read or does not fit; the message names the field and the file."""


@dataclass
class PretrainedReport:
    """What `load_pretrained` did. Keys are the model's state-dict names."""

    source: str  # the URI as given
    kind: str  # "darknet weights 0.2.0", "state dict", "anchor-opt weights.pt", ...
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why it kept its init
    unused: list[str] = field(default_factory=list)  # keys of the file the model has no place for
    notes: list[str] = field(default_factory=list)

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The model's parameters that were loaded (their own optimizer group, say)."""
        chosen = set(self.loaded)
        return [p for name, p in model.named_parameters() if name in chosen]

    def lines(self) -> list[str]:
        out = [f"pretrained: {self.source} ({self.kind})"]
        out.append(f"  loaded {len(self.loaded)} tensors: {_modules(self.loaded) or 'none'}")
        by_reason: dict[str, list[str]] = {}
        for key, reason in self.skipped.items():  # each key's own shapes stay in `skipped`
            group = "the shape differs" if reason.startswith("shape ") else reason
            by_reason.setdefault(group, []).append(key)
        for reason, keys in by_reason.items():
            out.append(f"  not loaded: {_modules(keys)}: {reason}")
        if self.unused:
            out.append(f"  in the file, not in this model ({len(self.unused)}): {_modules(self.unused)}")
        out += [f"  note: {note}" for note in self.notes]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _modules(keys: Iterable[str], most: int = 40) -> str:
    """The modules the keys belong to, in order, once each ("backbone.fuse.1", not its 5 tensors)."""
    names = list(dict.fromkeys(k.rpartition(".")[0] or k for k in keys))
    more = f", ... ({len(names) - most} more)" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def load_pretrained(
    model: nn.Module, uri: str, storage_settings=None, allowed_root: str | None = None
) -> PretrainedReport:
    """Loads the weights at `uri` into `model` (a Detector) in place and says what it loaded.

    `uri`: a local path, file:// or s3:// URI (s3 needs `storage_settings`, a StorageSettings; the
    object is cached under its cache_dir). `allowed_root`: a folder or s3:// prefix the file must
    resolve inside when opened (None: anywhere the process may read). Returns a PretrainedReport;
    raises PretrainedError naming the file when it cannot be read, is not a format this loads, or
    does not fit the model (nothing is changed then, for darknet files)."""
    path, root = _local_file(uri, storage_settings, allowed_root)
    from trainer.data.errors import DataError
    from trainer.data.root import OutsideRoot

    try:
        f = root.open(path) if root is not None else open(path, "rb")  # noqa: SIM115 - closed below
    except OutsideRoot:
        raise PretrainedError(
            f"{FIELD}: {uri} resolves to {os.path.realpath(path)}, outside {root.folder} (the root this job "
            "was admitted under) or inside the S3 mirror cache: refused"
        ) from None
    except DataError as exc:  # a folder, a FIFO
        raise PretrainedError(f"{FIELD}: {uri}: {exc}") from None
    except OSError as exc:
        raise PretrainedError(f"{FIELD}: {uri}: cannot open ({exc.strerror or exc})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        magic = f.read(4)
        f.seek(0)
        if magic.startswith(_TORCH_MAGIC):
            return _load_torch(model, f, uri)
        return _load_darknet(model, f, size, uri)


# --- where the file is --------------------------------------------------------------------------------


def _local_file(uri: str, settings, allowed_root: str | None):
    """(local path, DataRoot to open it through or None) for `uri`, fetched from S3 when it is s3://."""
    from trainer.contract.storage import (
        NotFound,
        S3Storage,
        StorageError,
        fetch_to_cache,
        mirror_path,
        parse_uri,
    )
    from trainer.data.root import DataRoot

    try:
        where = parse_uri(uri)
        bound = parse_uri(allowed_root) if allowed_root is not None else None
    except ValueError as exc:
        raise PretrainedError(f"{FIELD}: {exc} (want a local path, file:// or s3:// URI)") from None
    is_s3 = not isinstance(where, Path)
    if bound is not None and isinstance(bound, Path) == is_s3:
        raise PretrainedError(
            f"{FIELD}: {uri!r} and model.pretrained_allowed_root {allowed_root!r}: one is an s3:// URI and "
            "the other a local path"
        )
    if not is_s3:
        if bound is None:
            if not where.is_file():
                raise PretrainedError(f"{FIELD}: {uri}: no such file")
            return where, None
        excluded = (Path(os.path.realpath(settings.cache_dir)),) if settings is not None else ()
        folder = Path(os.path.realpath(bound))
        return where, DataRoot(folder, tuple(p for p in excluded if p == folder or folder in p.parents))
    if settings is None:
        raise PretrainedError(f"{FIELD}: {uri}: an s3:// URI needs the run's storage settings")
    _, bucket, key = where
    if bound is not None and not _s3_under((bucket, key), bound[1:]):
        raise PretrainedError(f"{FIELD}: {uri} is outside {allowed_root}, the root it was admitted under")
    try:
        S3Storage(bucket, "", settings).stat(key.strip("/"))  # one object, never a folder's worth
        local = fetch_to_cache(uri, settings).local_path
        folder = mirror_path(allowed_root if bound is not None else uri, settings)
    except NotFound:
        raise PretrainedError(f"{FIELD}: {uri}: no such object") from None
    except (StorageError, ValueError) as exc:
        raise PretrainedError(f"{FIELD}: {uri}: {exc}") from None
    if not local.is_file():
        raise PretrainedError(f"{FIELD}: {uri}: names a folder, not one weights file")
    return local, DataRoot(Path(os.path.realpath(folder if bound is not None else folder.parent)))


def _s3_under(uri: tuple[str, str], root: tuple[str, str]) -> bool:
    path, top = (PurePosixPath(b, *[p for p in k.split("/") if p]) for b, k in (uri, root))
    return path == top or top in path.parents


# --- darknet --------------------------------------------------------------------------------------------


def _load_darknet(model: nn.Module, f: BinaryIO, size: int, uri: str) -> PretrainedReport:
    try:
        read = read_darknet_weights(f, size, model, uri)
    except DarknetFormatError as exc:
        raise PretrainedError(f"{FIELD}: {exc}") from None
    version = ".".join(map(str, read.version))
    report = PretrainedReport(uri, f"darknet weights {version}, {read.seen} images seen", loaded=read.keys)
    report.notes.append(f"the file held {len(read.loaded)} of the model's {read.total} darknet conv layers")
    loaded = set(read.keys)
    names = [layer.name for layer in read.loaded]
    for key in model.state_dict():
        if key in loaded or key.endswith("num_batches_tracked"):
            continue
        if key == ANCHORS_KEY:
            report.skipped[key] = ANCHORS_REASON
        elif key.startswith("head.pred") and read.head_skipped:
            report.skipped[key] = read.head_skipped
        elif key.startswith("head.wh_norm"):
            report.skipped[key] = "no darknet counterpart (tricks.bn_no_shift): kept at its identity init"
        else:
            report.skipped[key] = f"not in the file (it holds conv layers 0-{len(names) - 1})"
    backbone = getattr(model, "backbone", model)
    if any(name.endswith("fuse") for name in names) and getattr(backbone, "reorg", "darknet") != "darknet":
        report.notes.append(
            "backbone.fuse was trained on darknet's [reorg] order and this model folds the passthrough by "
            "space_to_depth: set model.reorg: darknet for darknet's outputs"
        )
    if "head.pred" in names:
        report.notes.append(
            "head.pred: the file's anchor n is this model's anchor n; the anchors are anchors.init's "
            "(darknet's cfg gives them in grid cells: times 32 for anchors.values)"
        )
    return report


# --- torch ---------------------------------------------------------------------------------------------


def _load_torch(model: nn.Module, f: BinaryIO, uri: str) -> PretrainedReport:
    try:
        payload = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise PretrainedError(
            f"{FIELD}: {uri}: refused: it holds more than tensors and plain values, and a weights file "
            f"is only loaded with weights_only=True, which never runs code ({first})"
        ) from None
    except Exception as exc:  # truncated, not a torch file after all
        raise PretrainedError(
            f"{FIELD}: {uri}: not a readable torch file ({type(exc).__name__}: {exc})"
        ) from None
    state, kind = _state_dict(payload, uri)
    report = PretrainedReport(uri, kind)
    if isinstance(payload, dict) and isinstance(payload.get("config"), dict):
        theirs = (payload["config"].get("model") or {}).get("reorg", "space_to_depth")
        ours = getattr(getattr(model, "backbone", model), "reorg", theirs)
        if theirs != ours:
            report.notes.append(f"the file's model.reorg is {theirs!r}, this model's {ours!r}")
    _copy_matching(model, state, report)
    return report


def _state_dict(payload, uri: str) -> tuple[dict[str, Tensor], str]:
    from trainer.artifacts.exports import WEIGHTS_FORMAT

    def tensors(d) -> bool:
        return isinstance(d, dict) and bool(d) and all(isinstance(v, Tensor) for v in d.values())

    ours = isinstance(payload, dict) and payload.get("format") == WEIGHTS_FORMAT
    if ours and tensors(payload.get("model")):
        state, kind = payload["model"], "anchor-opt weights.pt"
    elif tensors(payload):
        state, kind = payload, "state dict"
    else:
        found = payload if isinstance(payload, dict) else {}
        key = next((k for k in ("model", "state_dict", "model_state_dict") if tensors(found.get(k))), None)
        if key is None:
            raise PretrainedError(
                f"{FIELD}: {uri}: a torch file, but no state dict in it (want a dict of tensors, or one "
                "under 'model' or 'state_dict')"
            )
        state, kind = payload[key], f"state dict under {key!r}"
    if all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel wrapper
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, kind


def _copy_matching(model: nn.Module, state: dict[str, Tensor], report: PretrainedReport) -> None:
    own = model.state_dict()
    head = [
        f"{k}: {list(state[k].shape)} in the file, {list(v.shape)} here"
        for k, v in own.items()
        if k.startswith("head.") and k in state and state[k].shape != v.shape
    ]
    head_reason = f"the head does not fit (classes or anchors differ; {'; '.join(head)}): kept at its init"
    with torch.no_grad():
        for key, tensor in own.items():
            theirs = state.get(key)
            if key == ANCHORS_KEY:
                report.skipped[key] = ANCHORS_REASON
            elif head and key.startswith("head."):
                report.skipped[key] = head_reason
            elif theirs is None:
                report.skipped[key] = "not in the file"
            elif theirs.shape != tensor.shape:
                report.skipped[key] = f"shape {list(theirs.shape)} in the file, {list(tensor.shape)} here"
            else:
                tensor.copy_(theirs)
                report.loaded.append(key)
    report.unused = [k for k in state if k not in own]
