"""Datasets: embedded synthetic generator; Pascal VOC, Cityscapes, ADE20K and image/mask
folder readers.

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

from fcnkit.atomic import check_complete
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
    "SegmentationDataset": "fcnkit.data.dataset",
    "dataset_summary": "fcnkit.data.dataset",
    "FolderDataset": "fcnkit.data.folder",
    "read_classes_file": "fcnkit.data.folder",
    "read_image": "fcnkit.data.images",
    "read_image_array": "fcnkit.data.images",
    "read_image_picture": "fcnkit.data.images",
    "read_mask": "fcnkit.data.images",
    "VOCDataset": "fcnkit.data.voc",
    "VOC_CLASSES": "fcnkit.data.voc",
    "CityscapesDataset": "fcnkit.data.cityscapes",
    "CITYSCAPES_CLASSES": "fcnkit.data.cityscapes",
    "CITYSCAPES_PALETTE": "fcnkit.data.cityscapes",
    "ADE20KDataset": "fcnkit.data.ade20k",
    "ADE20K_CLASSES": "fcnkit.data.ade20k",
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
_KINDS = ("voc", "folder", "synth", "cityscapes", "ade20k")
_SPECS = "voc:ROOT, cityscapes:ROOT, ade20k:ROOT, folder:ROOT, synth:ROOT"


def parse_spec(spec: str) -> tuple[str | None, Path]:
    """Split ``"KIND:ROOT"`` (KIND one of voc, cityscapes, ade20k, folder, synth) or
    ``"ROOT"`` into (kind or None, path)."""
    text = str(spec).strip()
    if not text:
        raise InputError(f"the dataset spec is empty; give {_SPECS} or a directory")
    kind, sep, rest = text.partition(":")
    if sep and kind.lower() in _KINDS:
        if not rest:
            raise InputError(f"dataset spec {text!r}: missing directory after '{kind}:'")
        return kind.lower(), Path(rest).expanduser()
    return None, Path(text).expanduser()


def detect_layout(root: str | os.PathLike[str]) -> str:
    """The layout of ``root``: ``"folder"`` (images/ + masks/), ``"voc"`` (a VOC tree),
    ``"cityscapes"`` (leftImg8bit/ + gtFine/) or ``"ade20k"`` (images/training|validation
    + annotations/, or ADEChallengeData2016/ holding them). Reads directory names only."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise InputError(f"{base}: dataset directory not found; check the path")
    if (base / "images").is_dir() and (base / "masks").is_dir():
        return "folder"
    for candidate in (base, base / "VOC2012", base / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return "voc"
    if (base / "leftImg8bit").is_dir() and (base / "gtFine").is_dir():
        return "cityscapes"
    for candidate in (base, base / "ADEChallengeData2016"):
        if (candidate / "annotations").is_dir() and any(
                (candidate / "images" / f).is_dir() for f in ("training", "validation")):
            return "ade20k"
    raise InputError(f"{base}: not a Pascal VOC tree (JPEGImages/), a folder dataset (images/"
                     "<split>/, masks/<split>/), Cityscapes (leftImg8bit/, gtFine/) or ADE20K "
                     "(images/, annotations/); see docs/datasets.md")


def open_dataset(
    spec: str, split: str, *, transform: Any = None, skip_bad: bool = False
) -> Any:
    """Open a segmentation dataset split.

    Args:
        spec: ``"voc:ROOT"`` (Pascal VOC 2012, optional SBD), ``"cityscapes:ROOT"``
            (leftImg8bit/ + gtFine/ labelIds mapped to the 19 trainIds),
            ``"ade20k:ROOT"`` (ADEChallengeData2016, 150 classes), ``"folder:ROOT"``
            (images/<split>/ + masks/<split>/), ``"synth:ROOT"`` (written by
            :func:`~fcnkit.data.synthetic.generate_synthetic_dataset`, read as VOC) or a
            bare directory (layout detected).
        split: split name (``train``, ``val``, ``train_aug`` …; Cityscapes ``train`` /
            ``val`` / ``test``, ADE20K ``train`` / ``val``).
        transform: joint transform called as ``transform(tv_tensors.Image,
            tv_tensors.Mask)``, e.g. :func:`fcnkit.data.transforms.train_transform`.
        skip_bad: drop unreadable / inconsistent samples with one warning line each
            (count in ``dataset.skipped``) instead of raising :class:`InputError`.

    Returns:
        A :class:`~fcnkit.data.dataset.SegmentationDataset` yielding (image float
        (3, H, W) in [0, 1], mask int64 (H, W), 255 = void).
    """
    kind, root = parse_spec(spec)
    check_complete(root, "dataset", f"fcnkit data synth --out {root}")
    if kind == "synth":
        if not (root / "synthetic.json").is_file():
            raise InputError(f"{root}: no synthetic.json, not a synthetic dataset; create it with "
                             f"'fcnkit data synth --out {root}' or use voc:/folder:")
        kind = "voc"
    if kind is None:
        kind = detect_layout(root)
    if kind == "voc":
        # local: import cost (torch, ~3 s; see the module docstring)
        from fcnkit.data.voc import VOCDataset

        return VOCDataset(root, split, transform=transform, skip_bad=skip_bad)
    if kind == "cityscapes":
        # local: import cost (torch, ~3 s; see the module docstring)
        from fcnkit.data.cityscapes import CityscapesDataset

        return CityscapesDataset(root, split, transform=transform, skip_bad=skip_bad)
    if kind == "ade20k":
        # local: import cost (torch, ~3 s; see the module docstring)
        from fcnkit.data.ade20k import ADE20KDataset

        return ADE20KDataset(root, split, transform=transform, skip_bad=skip_bad)
    # local: import cost (torch, ~3 s; see the module docstring)
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
