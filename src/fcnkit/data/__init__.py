"""Datasets: embedded synthetic generator, Pascal VOC and image/mask folder readers.

Names are imported lazily, so that ``fcnkit.data.synthetic`` (used in worker processes)
and ``fcnkit.data.palette`` do not pull in torch.

Public API::

    open_dataset(spec, split, *, transform=None, skip_bad=False) -> SegmentationDataset
    read_image(path) -> float tensor (3, H, W) in [0, 1]
    generate_synthetic_dataset(out_dir, *, train, val, seed, size, workers) -> Path
    SYNTHETIC_CLASSES, VOC_CLASSES, IGNORE_INDEX
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "IGNORE_INDEX": "fcnkit.data.palette",
    "voc_palette": "fcnkit.data.palette",
    "colorize": "fcnkit.data.palette",
    "overlay": "fcnkit.data.palette",
    "save_mask_png": "fcnkit.data.palette",
    "SYNTHETIC_CLASSES": "fcnkit.data.synthetic",
    "generate_synthetic_dataset": "fcnkit.data.synthetic",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fcnkit.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
