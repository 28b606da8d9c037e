"""The dataset record type: a list of (id, image file, mask file) samples read as
``(image, mask)`` pairs, and a summary of any such dataset.

Every layout (:class:`fcnkit.data.folder.FolderDataset`,
:class:`fcnkit.data.voc.VOCDataset`, ...) only builds the sample list; reading, checking,
skipping bad samples and the joint transform live here. ``image`` is a float tensor
(3, H, W) in [0, 1] (RGB), ``mask`` an int64 tensor (H, W) of class indices, 255 = void.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors

from fcnkit.constants import IGNORE_INDEX
from fcnkit.data.images import (
    RGB,
    _exif_stored_size,
    _to_float_chw,
    check_labels,
    read_image_array,
    read_mask,
)
from fcnkit.data.palette import voc_palette
from fcnkit.errors import InputError, warn

__all__ = ["SampleError", "SegmentationDataset", "dataset_summary"]


class SampleError(InputError):
    """A bad sample met while reading a dataset item (an :class:`InputError`).

    A DataLoader worker re-raises exceptions as ``type(exc)("Caught … in DataLoader worker
    process 0.\nOriginal Traceback …")``, whose first line says nothing about the file.
    This class recovers the original one-line message from the traceback's last line, so
    the command line still prints "file: reason; fix" when ``--workers`` > 0.
    """

    def __init__(self, message: object = "") -> None:
        text = str(message)
        if text.startswith("Caught ") and "Original Traceback" in text:
            last = text.rstrip().splitlines()[-1]
            name, sep, original = last.partition(": ")
            if sep and name.endswith("SampleError"):
                text = original
        super().__init__(text)



class SegmentationDataset(torch.utils.data.Dataset):
    """A list of (id, image file, mask file) samples read as (image, mask) pairs.

    Attributes:
        root: dataset root directory.
        split: split name.
        layout: ``"voc"`` or ``"folder"``.
        classes: class names, index = label value.
        num_classes: ``len(classes)``.
        palette: RGB colour per class (for colourised masks and overlays).
        ignore_index: 255, the void label.
        ids: sample ids (file stems), in order.
        skipped: number of samples dropped by ``skip_bad=True``.
        skipped_samples: ``(id, reason)`` of each dropped sample.

    ``dataset[i]`` returns ``(image, mask)``: without a transform, image is a float tensor
    (3, H, W) in [0, 1] and mask an int64 tensor (H, W); with a transform, the transform
    is called as ``transform(tv_tensors.Image(image), tv_tensors.Mask(mask))`` and its
    result is returned as plain tensors (mask as int64).
    """

    ignore_index = IGNORE_INDEX
    layout = "folder"

    def __init__(
        self,
        root: Path,
        split: str,
        samples: Sequence[tuple[str, Path, Path]],
        classes: Sequence[str],
        palette: Sequence[Sequence[int]] | None = None,
        *,
        colours: dict[RGB, int] | None = None,
        transform: Callable[..., Any] | None = None,
        skip_bad: bool = False,
        mask_loader: Callable[[Path], np.ndarray] | None = None,
        skipped: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.palette = [tuple(int(v) for v in c) for c in
                        (palette if palette is not None else voc_palette(self.num_classes))]
        self.colours = colours
        self.transform = transform
        self._mask_loader = mask_loader
        # Samples a subclass already dropped (e.g. images without masks), already warned.
        self.skipped_samples: list[tuple[str, str]] = list(skipped)
        self._samples = list(samples)
        if skip_bad:
            kept = []
            for sample in self._samples:
                try:
                    self._load(sample)
                except InputError as exc:
                    self.skipped_samples.append((sample[0], str(exc)))
                    warn(f"skipping {sample[0]}: {exc}")
                    continue
                kept.append(sample)
            self._samples = kept
            if self.skipped_samples:
                warn(f"skipped {len(self.skipped_samples)} bad sample(s) of split {split!r}")
        if not self._samples:
            raise InputError(f"{self.root}: split {split!r} has no usable samples; "
                             "check the split name and the files")
        self.ids = [sample[0] for sample in self._samples]

    @property
    def skipped(self) -> int:
        return len(self.skipped_samples)

    def __len__(self) -> int:
        return len(self._samples)

    def image_path(self, index: int) -> Path:
        """The image file of sample ``index``."""
        return self._samples[index][1]

    def mask_path(self, index: int) -> Path:
        """The mask file of sample ``index``."""
        return self._samples[index][2]

    def read_mask(self, index: int) -> np.ndarray:
        """The mask of sample ``index`` as an (H, W) uint8 array (255 = void), checked."""
        return self._read_mask(self._samples[index][2])

    def _read_mask(self, path: Path) -> np.ndarray:
        if self._mask_loader is not None:
            labels = self._mask_loader(path)
            check_labels(labels, self.num_classes, path)
            return labels
        return read_mask(path, self.num_classes, self.colours)

    def _load(self, sample: tuple[str, Path, Path]) -> tuple[np.ndarray, np.ndarray]:
        _, image_file, mask_file = sample
        image = read_image_array(image_file)
        mask = self._read_mask(mask_file)
        if image.shape[:2] != mask.shape:
            stored = _exif_stored_size(image_file)
            fix = (f" after its EXIF orientation (stored {stored[0]}x{stored[1]}); they must "
                   "match: rotate the mask to the image as displayed, or remove the image's "
                   "orientation tag") if stored else "; they must match"
            raise InputError(
                f"{mask_file}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but image "
                f"{image_file.name} is {image.shape[1]}x{image.shape[0]}{fix}"
            )
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            image_u8, mask_u8 = self._load(self._samples[index])
        except SampleError:
            raise
        except InputError as exc:
            raise SampleError(str(exc)) from None
        image = _to_float_chw(image_u8)
        mask = torch.from_numpy(mask_u8.astype(np.int64))
        if self.transform is None:
            return image, mask

        image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"images={len(self)}, classes={self.num_classes})")


def dataset_summary(dataset: SegmentationDataset) -> dict[str, Any]:
    """Count a dataset's images, sizes and per-class pixels by reading every mask.

    Returns:
        A JSON-ready dict: ``root``, ``layout``, ``split``, ``images``, ``classes``,
        ``pixels`` (per class), ``fraction`` (of non-void pixels), ``void_pixels``,
        ``void_fraction`` (of all pixels), ``min_size`` / ``max_size`` ([H, W]),
        ``skipped``.
    """
    counts = np.zeros(256, dtype=np.int64)
    heights, widths = [], []
    for index in range(len(dataset)):
        labels = dataset.read_mask(index)
        counts += np.bincount(labels.ravel(), minlength=256)
        heights.append(labels.shape[0])
        widths.append(labels.shape[1])
    pixels = counts[: dataset.num_classes]
    labelled = int(pixels.sum())
    total = int(counts.sum())
    return {
        "root": str(dataset.root),
        "layout": dataset.layout,
        "split": dataset.split,
        "images": len(dataset),
        "classes": list(dataset.classes),
        "pixels": [int(v) for v in pixels],
        "fraction": [float(v) / labelled if labelled else 0.0 for v in pixels],
        "void_pixels": int(counts[IGNORE_INDEX]),
        "void_fraction": float(counts[IGNORE_INDEX]) / total if total else 0.0,
        "min_size": [min(heights), min(widths)],
        "max_size": [max(heights), max(widths)],
        "skipped": dataset.skipped,
    }
