"""Datasets: embedded synthetic generator, Pascal VOC and image/mask folder readers.

Names are imported lazily, so that ``fcnkit.data.synthetic`` (used in worker processes)
and ``fcnkit.data.palette`` do not pull in torch.

Public API::

    open_dataset(spec, split, *, transform=None, skip_bad=False) -> SegmentationDataset
    read_image(path) -> float tensor (3, H, W) in [0, 1]
    generate_synthetic_dataset(out_dir, *, train, val, seed, size, workers) -> Path
    ensure_dataset(spec, cache=None) -> (Path, generated_now)   the cached synthetic dataset
    SYNTHETIC_CLASSES, VOC_CLASSES, IGNORE_INDEX
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from fcnkit.errors import InputError

_LAZY = {
    "IGNORE_INDEX": "fcnkit.constants",
    "voc_palette": "fcnkit.data.palette",
    "colorize": "fcnkit.data.palette",
    "overlay": "fcnkit.data.palette",
    "save_mask_png": "fcnkit.data.palette",
    "SYNTHETIC_CLASSES": "fcnkit.data.synthetic",
    "generate_synthetic_dataset": "fcnkit.data.synthetic",
    "cache_dir": "fcnkit.data.cache",
    "ensure_dataset": "fcnkit.data.cache",
    "SegmentationDataset": "fcnkit.data.folder",
    "FolderDataset": "fcnkit.data.folder",
    "read_image": "fcnkit.data.folder",
    "read_image_array": "fcnkit.data.folder",
    "read_mask": "fcnkit.data.folder",
    "read_classes_file": "fcnkit.data.folder",
    "dataset_summary": "fcnkit.data.folder",
    "VOCDataset": "fcnkit.data.voc",
    "VOC_CLASSES": "fcnkit.data.voc",
    "train_transform": "fcnkit.data.transforms",
    "eval_transform": "fcnkit.data.transforms",
    "pad_collate": "fcnkit.data.transforms",
    "normalize": "fcnkit.data.transforms",
    "denormalize": "fcnkit.data.transforms",
    "IMAGENET_MEAN": "fcnkit.data.transforms",
    "IMAGENET_STD": "fcnkit.data.transforms",
}

__all__ = sorted([*_LAZY, "open_dataset", "detect_layout", "parse_spec"])

# "synth:DIR" reads a directory written by ``fcnkit data synth`` (Pascal VOC layout).
_KINDS = ("voc", "folder", "synth")


def parse_spec(spec: str) -> tuple[str | None, Path]:
    """Split ``"voc:ROOT"`` / ``"folder:ROOT"`` / ``"synth:ROOT"`` / ``"ROOT"`` into
    (kind or None, path)."""
    text = str(spec).strip()
    if not text:
        raise InputError("the dataset spec is empty; give voc:ROOT, folder:ROOT, synth:ROOT "
                         "or a directory")
    kind, sep, rest = text.partition(":")
    if sep and kind.lower() in _KINDS:
        if not rest:
            raise InputError(f"dataset spec {text!r}: missing directory after '{kind}:'")
        return kind.lower(), Path(rest).expanduser()
    return None, Path(text).expanduser()


def detect_layout(root: str | os.PathLike[str]) -> str:
    """``"folder"`` if ``root`` has images/ and masks/, ``"voc"`` if it is a VOC tree."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise InputError(f"{base}: dataset directory not found; check the path")
    if (base / "images").is_dir() and (base / "masks").is_dir():
        return "folder"
    for candidate in (base, base / "VOC2012", base / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return "voc"
    raise InputError(f"{base}: neither a Pascal VOC tree (JPEGImages/, SegmentationClass/) nor "
                     "a folder dataset (images/<split>/, masks/<split>/); see docs/datasets.md")


def open_dataset(
    spec: str, split: str, *, transform: Any = None, skip_bad: bool = False
) -> Any:
    """Open a segmentation dataset split.

    Args:
        spec: ``"voc:ROOT"`` (Pascal VOC 2012, optional SBD), ``"folder:ROOT"``
            (images/<split>/ + masks/<split>/), ``"synth:ROOT"`` (written by
            :func:`~fcnkit.data.synthetic.generate_synthetic_dataset`, read as VOC) or a
            bare directory (layout detected).
        split: split name (``train``, ``val``, ``train_aug`` …).
        transform: joint transform called as ``transform(tv_tensors.Image,
            tv_tensors.Mask)``, e.g. :func:`fcnkit.data.transforms.train_transform`.
        skip_bad: drop unreadable / inconsistent samples with one warning line each
            (count in ``dataset.skipped``) instead of raising :class:`InputError`.

    Returns:
        A :class:`~fcnkit.data.folder.SegmentationDataset` yielding (image float
        (3, H, W) in [0, 1], mask int64 (H, W), 255 = void).
    """
    kind, root = parse_spec(spec)
    if kind == "synth":
        if not (root / "synthetic.json").is_file():
            raise InputError(f"{root}: no synthetic.json, not a synthetic dataset; create it with "
                             f"'fcnkit data synth --out {root}' or use voc:/folder:")
        kind = "voc"
    if kind is None:
        kind = detect_layout(root)
    if kind == "voc":
        from fcnkit.data.voc import VOCDataset

        return VOCDataset(root, split, transform=transform, skip_bad=skip_bad)
    from fcnkit.data.folder import FolderDataset

    return FolderDataset(root, split, transform=transform, skip_bad=skip_bad)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fcnkit.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
