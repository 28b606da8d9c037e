"""Checkpoints: one plain dict, written atomically, loaded with ``weights_only=True``.

A fcnkit checkpoint is a ``dict`` holding only tensors and plain Python data (no pickled
classes), so ``torch.load(path, weights_only=True)`` opens it without running code. Its
schema is :class:`TrainingCheckpoint` (``fcnkit train`` writes every ``last.pt`` and
``best.pt`` through :meth:`TrainingCheckpoint.to_payload`)::

    {
        "format": "fcnkit-checkpoint/1",
        "model_state": {...},            # model.state_dict() (never the DDP wrapper's)
        "model_config": {"name": "fcn8s", "num_classes": 9, "backbone": "resnet18", ...},
        "classes": ["background", ...],  # names, index = class id
        "palette": [[0, 0, 0], ...],     # RGB per class id
        "config": {...},                 # the TrainConfig as a plain dict
        "epoch": 3,                      # epochs completed
        "step": 1200,                    # optimizer steps completed
        "optimizer_state": {...},
        "scheduler_state": {...},
        "scaler_state": {...},           # AMP GradScaler ({} without AMP)
        "rng_state": {...},              # capture_rng_state(): python / numpy / torch
        "metrics": {...},                # last validation metrics
        "best_miou": 0.61,               # best validation mIoU so far
        "best_epoch": 2,                 # the epoch best.pt holds (None: no best yet)
        "world_size": 2,                 # processes that trained it
    }

Only ``format``, ``model_state`` and ``model_config`` are required; evaluation and
prediction need nothing else. :func:`model_from_checkpoint` rebuilds the network through
``fcnkit.models.build_model(**model_config)`` and loads the weights.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fcnkit.atomic import atomic_path, check_regular_file
from fcnkit.constants import MAX_CLASSES
from fcnkit.errors import InputError, first_line
from fcnkit.models import build_model
from fcnkit.models.registry import foreign_checkpoint
from fcnkit.models.weights import FCNKIT, SAFETENSORS_FORMAT, read_safetensors, weights_from_loaded
from fcnkit.schemas import EXPORT_METADATA, MODEL_STATE, RESUME_STATE, check_fields, field_problem

CHECKPOINT_FORMAT = "fcnkit-checkpoint/1"
REQUIRED_KEYS = ("format", "model_state", "model_config")
# Key added by load_checkpoint (never saved): where the checkpoint came from, for messages.
SOURCE_KEY = "path"
# build_model options that download or read weights; a checkpoint already holds the weights.
_WEIGHT_OPTIONS = ("weights", "backbone_weights")


@dataclass
class TrainingCheckpoint:
    """The schema of ``last.pt`` / ``best.pt``: what a training run saves and resumes from.

    Every field is plain data or tensors (see the module docstring for an example).
    :meth:`to_payload` is the dict :func:`save_checkpoint` writes; :meth:`from_payload`
    reads one back, filling the resume fields a minimal checkpoint lacks.
    """

    model_state: Mapping[str, Any]
    model_config: Mapping[str, Any]
    classes: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)
    config: Mapping[str, Any] = field(default_factory=dict)
    epoch: int = 0
    step: int = 0
    optimizer_state: Mapping[str, Any] = field(default_factory=dict)
    scheduler_state: Mapping[str, Any] = field(default_factory=dict)
    scaler_state: Mapping[str, Any] = field(default_factory=dict)
    rng_state: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    best_miou: float = -math.inf
    best_epoch: int | None = None
    world_size: int = 1

    def to_payload(self) -> dict[str, Any]:
        """The checkpoint dict, ``format`` first (shallow: tensors are not copied)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"format": CHECKPOINT_FORMAT, **fields}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> TrainingCheckpoint:
        """The fields of a loaded checkpoint (missing optional keys take their defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file in the same directory + rename).

    Args:
        path: target file, e.g. ``RUN_DIR/last.pt``; parent directories are created.
        payload: the checkpoint dict (see the module docstring). ``format`` is filled in
            when absent; ``model_state`` and ``model_config`` are required.

    Returns:
        The path written. A crash while writing leaves any previous file untouched.

    Raises:
        ValueError: a required key is missing, or the payload holds an object that
            ``torch.load(weights_only=True)`` could not read back.
    """
    data = {k: v for k, v in payload.items() if k != SOURCE_KEY}
    data.setdefault("format", CHECKPOINT_FORMAT)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"checkpoint payload lacks {', '.join(missing)}")
    _check_plain(data, "payload")
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(data, tmp)
    return target


def load_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a fcnkit checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: a ``.pt`` file written by :func:`save_checkpoint`.
        map_location: passed to ``torch.load`` (default: every tensor on the CPU).

    Returns:
        The checkpoint dict, plus ``"path"``: the file it was read from (as ``str``).

    A torchvision ``fcn_resnet50/101`` or pytorch-fcn state dict (``.pth`` or
    ``.safetensors``) is accepted too: its model config is read off its keys and shapes
    (:func:`fcnkit.models.registry.foreign_checkpoint`), its tensors renamed to fcnkit's keys;
    it has no class names.

    Raises:
        InputError: the file is missing, is a directory, is corrupt or truncated, holds
            pickled objects other than tensors and plain data, or is not a fcnkit checkpoint
            (nor a torchvision / pytorch-fcn state dict).
    """
    file = Path(path)
    if file.is_dir():
        raise InputError(
            f"checkpoint {file} is a directory; pass a file such as {file / 'best.pt'} "
            f"or {file / 'last.pt'}"
        )
    if not file.exists():
        raise InputError(f"checkpoint {file} does not exist; check the path (fcnkit train "
                         "writes RUN_DIR/last.pt and RUN_DIR/best.pt)")
    check_regular_file(file, "checkpoint")  # a FIFO would block the read forever
    if file.suffix == ".safetensors":
        return _checkpoint_from_safetensors(file)
    try:
        data = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/truncated/unsafe files
        reason = first_line(exc)
        if "weights only" in reason.lower() or "weights_only" in reason.lower():
            reason = "it contains pickled objects other than tensors and plain data"
        raise InputError(
            f"checkpoint {file} cannot be read ({reason[:160]}); it is corrupt, truncated or "
            "not a fcnkit checkpoint: re-create it with fcnkit train"
        ) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        foreign = _foreign_checkpoint(file, data)
        if foreign is not None:
            return foreign
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(
            f"checkpoint {file} is not a fcnkit checkpoint (format {found!r}, expected "
            f"{CHECKPOINT_FORMAT!r}); pass a file written by fcnkit train"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing or not isinstance(data["model_config"], dict) or "name" not in data[
        "model_config"
    ]:
        what = ", ".join(missing) if missing else "model_config['name']"
        raise InputError(
            f"checkpoint {file} lacks {what}; it is incomplete: re-create it with fcnkit train"
        )
    _refuse_crafted_fields(file, data)
    data[SOURCE_KEY] = str(file)
    return data


def _foreign_checkpoint(file: Path, data: Any) -> dict[str, Any] | None:
    """A torchvision ``fcn_resnet50/101`` or pytorch-fcn state dict as a checkpoint dict
    (model config read off its keys and shapes, tensors under fcnkit's names), else None."""
    try:
        weights = weights_from_loaded(data, file, "checkpoint")
    except InputError:
        return None
    if weights.layout == FCNKIT:
        return None
    fields = foreign_checkpoint(weights)
    if fields is None:
        return None
    out = {"format": CHECKPOINT_FORMAT, **fields, SOURCE_KEY: str(file)}
    _refuse_crafted_fields(file, out)
    return out


def _refuse_crafted_fields(file: Path, data: Mapping[str, Any]) -> None:
    problem = checkpoint_field_problem(data)
    if problem:
        raise InputError(f"checkpoint {file} has {problem}; it was not written by fcnkit "
                         "or was modified: re-create it")


def checkpoint_field_problem(data: Mapping[str, Any]) -> str | None:
    """What is wrong with a checkpoint's plain fields, or None (checked before any model is
    built: a crafted ``num_classes`` of 10**9 would otherwise allocate a huge score layer).

    Also checks ``model_state`` (names to tensors) and the resume fields against
    :data:`fcnkit.schemas.MODEL_STATE` and :data:`fcnkit.schemas.RESUME_STATE`; the palette
    has exactly one RGB triple per class.
    """
    cfg = data["model_config"]
    num_classes = cfg.get("num_classes")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not (
            1 <= num_classes <= MAX_CLASSES):
        return f"model_config num_classes={num_classes!r} (expected an integer 1..{MAX_CLASSES})"
    if not isinstance(cfg.get("name"), str):
        return f"model_config name={cfg.get('name')!r} (expected a model name)"
    for key, value in cfg.items():
        if not isinstance(value, (str, int, float, bool, type(None), list, tuple)):
            return f"model_config {key}={type(value).__name__} (expected plain values)"
        if isinstance(value, float) and not math.isfinite(value):
            return f"model_config {key}={value!r} (expected a finite number)"
    classes = data.get("classes")
    if classes and (not isinstance(classes, (list, tuple)) or len(classes) !=
                                num_classes or not all(isinstance(c, str) for c in classes)):
        return f"classes {str(classes)[:60]} (expected {num_classes} class names)"
    palette = data.get("palette")
    if palette:
        if not isinstance(palette, (list, tuple)) or len(palette) != num_classes or not all(
                isinstance(c, (list, tuple)) and len(c) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255
                        for v in c) for c in palette):
            return (f"palette {str(palette)[:60]} (expected {num_classes} RGB triples of "
                    "integers 0..255)")
    config = data.get("config")
    if config is not None and not isinstance(config, Mapping):
        return f"config of type {type(config).__name__} (expected a dict)"
    for key in ("epoch", "step"):
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{key}={value!r} (expected a non-negative integer)"
    return field_problem(data, MODEL_STATE) or field_problem(data, RESUME_STATE)


def _checkpoint_from_safetensors(file: Path) -> dict[str, Any]:
    # fcnkit export's .safetensors (inference.export_safetensors): weights + model metadata.
    state, meta = read_safetensors(file)
    config = meta.get("model_config")
    if meta.get("format") != SAFETENSORS_FORMAT or not isinstance(config, dict) or (
        "name" not in config
    ):
        foreign = _foreign_checkpoint(file, state)
        if foreign is not None:
            return foreign
        raise InputError(f"checkpoint {file} is a .safetensors file without fcnkit metadata "
                         f"(format {meta.get('format')!r}); pass a file written by fcnkit "
                         "export, or load it with build_model(name, weights=...)")
    check_fields(meta, EXPORT_METADATA, file=file, what="checkpoint",
                 fix="export it again with fcnkit export")
    data = {"format": CHECKPOINT_FORMAT, "model_state": state, "model_config": config,
            "classes": list(meta.get("classes") or []),
            "palette": list(meta.get("palette") or []), SOURCE_KEY: str(file)}
    _refuse_crafted_fields(file, data)
    return data


def resolve_checkpoint_path(path: str | os.PathLike[str], *, name: str = "last.pt") -> Path:
    """Map ``RUN_DIR`` to ``RUN_DIR/<name>``; a file path is returned unchanged.

    Raises:
        InputError: ``path`` does not exist, or the run directory holds no ``<name>``.
    """
    p = Path(path)
    if p.is_dir():
        candidate = p / name
        if not candidate.is_file():
            raise InputError(
                f"run directory {p} holds no {name}; pass a run directory written by "
                "fcnkit train or a checkpoint file"
            )
        return candidate
    if not p.exists():
        raise InputError(
            f"{p} does not exist; pass a run directory written by fcnkit train or a "
            "checkpoint file"
        )
    return p


def run_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint to evaluate or predict with: a file as given, or a run directory's
    ``best.pt`` (``last.pt`` when the run has no best yet).

    Raises:
        InputError: ``path`` does not exist, or the run directory holds neither file.
    """
    p = Path(path).expanduser()
    if p.is_dir() and not (p / "best.pt").is_file():
        return resolve_checkpoint_path(p, name="last.pt")
    return resolve_checkpoint_path(p, name="best.pt")


def describe_checkpoint(ckpt: Mapping[str, Any]) -> str:
    """A short description such as ``"fcn8s (backbone resnet18) for 9 classes"``."""
    cfg = ckpt.get("model_config", {})
    name = cfg.get("name", "?")
    backbone = cfg.get("backbone")
    arch = f"{name} (backbone {backbone})" if backbone else str(name)
    return f"{arch} for {cfg.get('num_classes', '?')} classes"


def model_from_checkpoint(
    ckpt: Mapping[str, Any] | str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    name: str | None = None,
) -> nn.Module:
    """Rebuild the checkpoint's network and load its weights (eval mode).

    Args:
        ckpt: a dict from :func:`load_checkpoint`, or a checkpoint path.
        device: where to put the model.
        num_classes: if given, the number of classes the caller expects (e.g. a dataset's);
            a different count in the checkpoint is an error.
        name: if given, the model name the caller expects (e.g. ``"fcn8s"``).

    Returns:
        The model in ``eval()`` mode on ``device``.

    Raises:
        InputError: the checkpoint is for another architecture or class count, or its
            weights do not fit the model its config describes.
    """
    if not isinstance(ckpt, Mapping):
        ckpt = load_checkpoint(ckpt)
    source = ckpt.get(SOURCE_KEY, "<in memory>")
    cfg = dict(ckpt["model_config"])
    what = describe_checkpoint(ckpt)
    if name is not None and cfg.get("name") != name:
        raise InputError(
            f"checkpoint {source} is a {what}, not a {name}; pass a checkpoint trained "
            f"as {name} or ask for model {cfg.get('name')!r}"
        )
    if num_classes is not None and cfg.get("num_classes") != num_classes:
        raise InputError(
            f"checkpoint {source} is a {what}, but the data has {num_classes} classes; "
            "pass a checkpoint trained on this dataset (or fine-tune one with fcnkit train); "
            "a folder dataset without classes.txt counts its classes from its masks: if they "
            f"miss some of the {cfg.get('num_classes')}, list every class in classes.txt"
        )

    model_name = cfg.pop("name")
    for key in _WEIGHT_OPTIONS:
        cfg.pop(key, None)
    try:
        model = build_model(model_name, **cfg)
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(
            f"checkpoint {source} describes a model this fcnkit cannot build ({what}: "
            f"{first_line(exc)}); use the fcnkit version that wrote it"
        ) from None
    try:
        model.load_state_dict(ckpt["model_state"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise InputError(
            f"checkpoint {source} is a {what}, but its weights do not fit that model "
            f"({first_line(exc)[:200]}); the file is damaged or from another fcnkit "
            "version: re-create it with fcnkit train"
        ) from None
    return model.to(device).eval()


# --- RNG state -----------------------------------------------------------------------------
# torch.load(weights_only=True) accepts tensors, containers and Python scalars only, so the
# numpy MT19937 state (an ndarray inside a tuple) is stored as a list of ints.


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU, plus CUDA when available) RNG states as plain data."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy": [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (missing entries are left alone)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state(
            (str(name), np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached))
        )
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def _to_plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


_PLAIN_SCALARS = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.Size)


def _check_plain(value: Any, where: str) -> None:
    """Reject objects that ``torch.load(weights_only=True)`` would refuse to unpickle."""
    if isinstance(value, _PLAIN_SCALARS):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_plain(k, where)
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple, set)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    raise ValueError(
        f"checkpoint {where} holds a {type(value).__name__}; store plain data "
        "(dict/list/str/int/float/bool/None) or tensors so weights_only loading works"
    )
