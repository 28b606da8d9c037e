"""Reading images and label masks, the dataset record type, and the image/mask folder layout.

Every reader yields the same record: ``(image, mask)`` with ``image`` a float tensor
(3, H, W) in [0, 1] (RGB) and ``mask`` an int64 tensor (H, W) of class indices, 255 =
void (ignored). :class:`SegmentationDataset` holds a list of (id, image file, mask file)
samples; :class:`FolderDataset` and :class:`fcnkit.data.voc.VOCDataset` only build that
list.

Folder layout (``--data folder:ROOT``)::

    ROOT/images/<split>/<stem>.<jpg|jpeg|png|bmp|tif|tiff|webp>
    ROOT/masks/<split>/<stem>.png      single-channel class indices, 255 = void
    ROOT/classes.txt                   optional: one class per line, "name" or "name R G B"

Without ``classes.txt`` the classes are ``class_0 … class_{K-1}`` with K = 1 + the largest
label found in any mask under ``masks/``. Masks stored as RGB colours are mapped to class
indices through the colours listed in ``classes.txt`` (the VOC void colour 224 224 192
maps to 255); without colours they are rejected.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import tv_tensors

from fcnkit.atomic import check_regular_file, read_text_utf8
from fcnkit.constants import IGNORE_INDEX
from fcnkit.data.palette import voc_palette
from fcnkit.errors import InputError, first_line, warn

RGB = tuple[int, int, int]

#: Image file extensions the folder reader recognises (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Colour of void pixels in Pascal VOC's colour-rendered masks.
VOC_VOID_COLOUR: RGB = (224, 224, 192)



# ------------------------------------------------------------------------ file readers


def _open_image(path: Path, what: str) -> Image.Image:
    """Open and fully decode ``path``; corrupt or truncated files raise InputError (a FIFO
    or device too, before it is opened)."""
    check_regular_file(path, f"{what} file")
    try:
        handle = Image.open(path)
        try:
            handle.load()
            # In place: no copy of an upright image (a huge photo would briefly be held
            # twice); a rotated one is transposed into a new buffer that replaces it.
            ImageOps.exif_transpose(handle, in_place=True)
            if getattr(handle, "n_frames", 1) > 1:  # multi-frame files keep their file open
                frame = handle.copy()
                handle.close()
                return frame
            return handle  # single-frame files are closed by load()
        except BaseException:
            handle.close()
            raise
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found; check the dataset path") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: {what} is too large to decode safely ({exc}); downscale "
                         "it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = first_line(exc)
        raise InputError(
            f"{path}: cannot read {what} ({reason}); replace or remove the file "
            "(or skip bad samples)"
        ) from None


def read_image_array(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array, EXIF orientation applied.

    Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit inputs are converted to
    8-bit RGB; 16-bit values are scaled by the type's range (65535 → 255), float images
    by 1.0 → 255. A corrupt or truncated file raises :class:`InputError` naming it.
    """
    image = _open_image(Path(path), "image")
    if image.mode.startswith("I") or image.mode == "F":
        return np.repeat(_wide_gray_to_uint8(image)[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA").convert("RGB")
    if image.mode != "RGB":  # convert() copies even an RGB image: 4 more bytes a pixel
        image = image.convert("RGB")
    return np.asarray(image)


#: Full-scale value of PIL's wide grayscale modes. 16-bit files (PNG, TIFF) open as
#: ``I;16*`` or, in older Pillow, ``I``: both hold 0..65535. ``F`` holds floats in [0, 1]
#: (torchvision's convention for float images, ``transforms.v2.ToDtype(scale=True)``).
_FULL_SCALE = {"I": 65535.0, "F": 1.0}


def _wide_gray_to_uint8(image: Image.Image) -> np.ndarray:
    """16/32-bit or float grayscale → uint8, scaled by the type's range, not the image's max.

    ``v8 = round(v16 * 255 / 65535)`` (= v16 / 257), as ``ToDtype(torch.uint8, scale=True)``
    does, so the same picture stored in 8 and in 16 bits reads the same.
    """
    array = np.asarray(image, dtype=np.float64)
    top = _FULL_SCALE["F" if image.mode == "F" else "I"]
    array = np.nan_to_num(array, nan=0.0, posinf=top, neginf=0.0)
    return np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8)


def read_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an image file as a float tensor (3, H, W) in [0, 1], RGB.

    EXIF orientation is applied; grayscale / palette / RGBA / CMYK inputs become RGB.

    Raises:
        InputError: the file is missing, corrupt or truncated (the message names it).
    """
    return _to_float_chw(read_image_array(path))


def _to_float_chw(array: np.ndarray) -> torch.Tensor:
    # (H, W, 3) uint8 → (3, H, W) float32 / 255, in numpy: small tensor ops in torch are
    # slowed down by its intra-op thread pool when the CPU is busy (DataLoader workers).
    chw = np.empty((3, *array.shape[:2]), dtype=np.float32)
    np.multiply(array.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=chw)
    return torch.from_numpy(chw)


def colour_lookup(palette: Sequence[Sequence[int]]) -> dict[RGB, int]:
    """Map each palette colour to its class index; the VOC void colour maps to 255."""
    lookup: dict[RGB, int] = {VOC_VOID_COLOUR: IGNORE_INDEX}
    for index, colour in enumerate(palette):
        lookup[tuple(int(v) for v in colour)] = index  # type: ignore[assignment]
    return lookup


def _rgb_to_labels(rgb: np.ndarray, lookup: dict[RGB, int], path: Path) -> np.ndarray:
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[
        ..., 2
    ].astype(np.int64)
    table = {((r << 16) | (g << 8) | b): index for (r, g, b), index in lookup.items()}
    unique, inverse = np.unique(codes, return_inverse=True)
    labels = np.empty(len(unique), dtype=np.uint8)
    for n, code in enumerate(unique.tolist()):
        if code not in table:
            colour = (code >> 16, (code >> 8) & 255, code & 255)
            raise InputError(
                f"{path}: mask colour {colour} is not a class colour; add it to classes.txt "
                "as 'name R G B' or store masks as class indices"
            )
        labels[n] = table[code]
    return labels[inverse.reshape(codes.shape)]


def read_mask(
    path: str | os.PathLike[str],
    num_classes: int | None = None,
    colours: dict[RGB, int] | None = None,
) -> np.ndarray:
    """Read a label mask as an (H, W) uint8 array of class indices (255 = void).

    Palette ("P") and grayscale ("L", "I;16", "1") masks hold class indices directly.
    RGB(A) masks whose three channels are equal are read as grayscale; other RGB masks are
    mapped through ``colours`` (colour → class index) or rejected.

    Args:
        path: mask file (PNG).
        num_classes: if given, labels ≥ ``num_classes`` other than 255 raise InputError.
        colours: colour → class index table for RGB masks (see :func:`colour_lookup`).

    Raises:
        InputError: unreadable file, RGB colours without a table or not in it, labels out
            of range.
    """
    file = Path(path)
    image = _open_image(file, "mask")
    if image.mode in ("P", "L", "1"):
        labels = np.asarray(image if image.mode != "1" else image.convert("L"))
        if image.mode == "1":
            labels = (labels > 0).astype(np.uint8)
    elif image.mode in ("LA", "PA"):
        labels = np.asarray(image.getchannel(0))
    elif image.mode.startswith("I"):
        wide = np.asarray(image).astype(np.int64)
        if wide.size and (wide.min() < 0 or wide.max() > 255):
            raise InputError(f"{file}: mask labels {wide.min()}..{wide.max()} do not fit 0..255; "
                             "store class indices 0..254 with 255 = void")
        labels = wide.astype(np.uint8)
    else:
        rgb = np.asarray(image.convert("RGB"))
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            labels = rgb[..., 0].copy()
        elif colours:
            labels = _rgb_to_labels(rgb, colours, file)
        else:
            raise InputError(
                f"{file}: mask is an RGB colour image but class indices were expected; save "
                "single-channel index PNGs or list each class colour in classes.txt as "
                "'name R G B'"
            )
    labels = np.array(labels, dtype=np.uint8, copy=True)  # writable, owns its memory
    if num_classes is not None:
        check_labels(labels, num_classes, file)
    return labels


def check_labels(labels: np.ndarray, num_classes: int, path: Path | str) -> None:
    """Raise InputError if ``labels`` holds a value ≥ ``num_classes`` other than 255."""
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    bad = [int(v) for v in present if v >= num_classes and v != IGNORE_INDEX]
    if bad:
        raise InputError(
            f"{path}: mask label {bad[0]} is not a class (0..{num_classes - 1}, 255 = void); "
            "fix the mask or list all classes in classes.txt"
        )


def read_classes_file(path: str | os.PathLike[str]) -> tuple[list[str], list[RGB] | None]:
    """Parse ``classes.txt``: one class per line, ``name`` or ``name R G B``.

    Line ``i`` (blank lines and ``#`` comments skipped) names class index ``i``. Values
    may be separated by spaces, tabs or commas. Either every line has a colour or none.

    Returns:
        ``(names, palette)`` with ``palette`` ``None`` when no colours are given.
    """
    file = Path(path)
    names: list[str] = []
    colours: list[RGB | None] = []
    for number, raw in enumerate(read_text_utf8(file, "classes file").splitlines(),
                                   start=1):
        line = raw.split("#", 1)[0].replace(",", " ").replace(":", " ").strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) == 1:
            colours.append(None)
        elif len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts[1:]):
            colours.append((int(parts[1]), int(parts[2]), int(parts[3])))
        else:
            raise InputError(f"{file}:{number}: expected 'name' or 'name R G B' (0..255), "
                             f"got {raw.strip()!r}")
        names.append(parts[0])
    if not names:
        raise InputError(f"{file}: no class names; write one class name per line")
    if len(names) > 255:
        raise InputError(f"{file}: {len(names)} classes, at most 255 fit (255 = void)")
    if len(set(names)) != len(names):
        raise InputError(f"{file}: class names must be unique")
    if all(c is None for c in colours):
        return names, None
    if any(c is None for c in colours):
        raise InputError(f"{file}: give a colour (name R G B) on every line or on none")
    return names, [c for c in colours if c is not None]


# ------------------------------------------------------------------------- the dataset


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
            raise InputError(
                f"{mask_file}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but image "
                f"{image_file.name} is {image.shape[1]}x{image.shape[0]}; they must match"
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


def _find_images(directory: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for file in sorted(directory.iterdir()):
        if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS:
            if file.stem in images:
                raise InputError(f"{directory}: two images named {file.stem!r} "
                                 f"({images[file.stem].name}, {file.name}); rename one")
            images[file.stem] = file
    return images


def _infer_num_classes(masks_dir: Path, skip_bad: bool) -> int:
    """1 + the largest non-void label in any mask under ``masks_dir`` (all splits)."""
    top = 0
    for mask_file in sorted(masks_dir.rglob("*.png")):
        try:
            labels = read_mask(mask_file)
        except InputError:
            if skip_bad:
                continue  # the sample itself is reported and dropped later
            raise
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
        present = present[present != IGNORE_INDEX]
        if present.size:
            top = max(top, int(present.max()))
    return top + 1


class FolderDataset(SegmentationDataset):
    """``images/<split>/<stem>.<ext>`` + ``masks/<split>/<stem>.png`` (+ ``classes.txt``).

    Args:
        root: dataset root.
        split: split name (a subdirectory of ``images/`` and ``masks/``).
        transform: joint transform, see :class:`SegmentationDataset`.
        skip_bad: drop bad samples (with a warning line each) instead of raising.
    """

    layout = "folder"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        *,
        transform: Callable[..., Any] | None = None,
        skip_bad: bool = False,
    ) -> None:
        root = Path(root).expanduser()
        images_dir, masks_dir = root / "images" / split, root / "masks" / split
        if not root.is_dir():
            raise InputError(f"{root}: dataset directory not found; check the path")
        for directory in (images_dir, masks_dir):
            if not directory.is_dir():
                available = sorted(p.name for p in (root / "images").glob("*") if p.is_dir())
                hint = f" (splits found: {', '.join(available)})" if available else ""
                raise InputError(f"{directory}: directory not found; folder layout needs "
                                 f"images/<split>/ and masks/<split>/{hint}")
        images = _find_images(images_dir)
        if not images:
            raise InputError(f"{images_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}); "
                             "put the split's images there")
        samples = []
        missing: list[tuple[str, str]] = []
        for stem, image_file in images.items():
            mask_file = masks_dir / f"{stem}.png"
            if mask_file.is_file():
                samples.append((stem, image_file, mask_file))
                continue
            message = f"{image_file}: no mask {mask_file.name} in {masks_dir}; add it"
            if not skip_bad:
                raise InputError(message + " or remove the image (or skip bad samples)")
            warn(f"skipping {stem}: {message}")
            missing.append((stem, message))
        classes_file = root / "classes.txt"
        if classes_file.is_file():
            classes, palette = read_classes_file(classes_file)
        else:
            classes = [f"class_{i}" for i in range(_infer_num_classes(root / "masks", skip_bad))]
            palette = None
        super().__init__(
            root, split, samples, classes, palette,
            colours=colour_lookup(palette) if palette is not None else None,
            transform=transform, skip_bad=skip_bad, skipped=missing,
        )


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
