"""Prediction: segment image files and write class-index PNGs (and overlays).

For every input image ``<stem>.<ext>``, :func:`predict_paths` writes

* ``OUT/<stem>.png``: a palette-mode PNG whose pixel values are the predicted class
  indices (open it as an image to see the colours, read it as an array to get the labels);
* ``OUT/<stem>_overlay.jpg`` (optional): the class colours blended over the image.

Conventions:

* Inputs are files (any extension PIL can read) or directories (their image files,
  non-recursive, sorted by name). Grayscale, palette, RGBA and 16-bit images are converted
  to RGB; the EXIF orientation tag is applied, so outputs are in the *corrected*
  orientation (what an image viewer shows), not the raw sensor orientation.
* Any size works: the model is fully convolutional. An image above ``max_pixels`` is
  segmented by overlapping tiles (sliding window, logits averaged, blocks released as they
  are final; see :mod:`fcnkit.inference.labels`) so activation memory stays bounded.
* Two inputs with the same stem (``a/x.jpg`` and ``b/x.png``) would write the same
  output: the first keeps ``x``, later ones get ``x-2``, ``x-3``, ... (in input order,
  skipping names another input already uses). :func:`plan_outputs` gives the mapping.
* Every file is written atomically (temporary file + rename): an error never leaves a
  half-written output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from fcnkit.atomic import (
    IncompleteMarker,
    atomic_path,
    check_writable_directory,
    incomplete_until_done,
)
from fcnkit.data.images import IMAGE_EXTENSIONS as FOLDER_IMAGE_EXTENSIONS
from fcnkit.data.images import read_image_picture
from fcnkit.data.palette import blend_into, save_mask_png
from fcnkit.data.pixels import unit_float
from fcnkit.errors import InputError, first_line, warn
from fcnkit.inference.backends import open_backend
from fcnkit.inference.labels import (
    as_window,
    channel_argmax,
    iter_logit_blocks,
    whole_image_labels,
)
from fcnkit.inference.picture import PictureTiles
from fcnkit.inference.tiling import (
    DEFAULT_LOGIT_BUFFER_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    HUGE_IMAGE_LOGIT_BUFFER_BYTES,
)
from fcnkit.models.preprocess import model_preprocessing
from fcnkit.outputs import check_outputs

__all__ = [
    "IMAGE_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "PlannedOutput",
    "check_out_dir",
    "check_planned_outputs",
    "collect_images",
    "label_fractions",
    "plan_outputs",
    "predict_checkpoint",
    "predict_image",
    "predict_paths",
    "predict_samples",
]

#: File extensions picked up when an input is a directory (case-insensitive): the same
#: list the dataset readers use.
IMAGE_EXTENSIONS = FOLDER_IMAGE_EXTENSIONS
#: Opacity of the class colours in overlays.
OVERLAY_ALPHA = 0.5
#: Pixels counted at a time by :func:`label_fractions`.
_COUNT_CHUNK = 1 << 22


def collect_images(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and directories into the list of image files to segment.

    Args:
        inputs: image files (taken as given, whatever their extension) and directories
            (their files with an extension in :data:`IMAGE_EXTENSIONS`, non-recursive,
            hidden files skipped, sorted by name).

    Returns:
        Image paths in input order; a file reached twice is listed once.

    Raises:
        InputError: no inputs, an input does not exist, or a directory holds no images.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    items = list(inputs)
    if not items:
        raise InputError("no input images given; pass image files or directories")
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".")
                and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                raise InputError(
                    f"input directory {path} holds no images "
                    f"({', '.join(IMAGE_EXTENSIONS)}); pass a directory with images or the "
                    "image files themselves"
                )
        elif path.is_file():
            files = [path]
        else:
            raise InputError(f"input {path} does not exist; pass image files or directories")
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                found.append(f)
    return found


@dataclass(frozen=True)
class PlannedOutput:
    """Where one input's results go."""

    source: Path
    mask: Path
    overlay: Path | None


def plan_outputs(images: Sequence[Path], out_dir: str | os.PathLike[str], *,
                 overlay: bool = True) -> list[PlannedOutput]:
    """Output paths for ``images``: ``<stem>.png`` (+ ``<stem>_overlay.jpg``), stems made unique.

    The first image with a given stem keeps it; later ones get ``<stem>-2``, ``<stem>-3``, ...
    (the smallest suffix no other input's stem or earlier output uses).
    """
    out = Path(out_dir)
    taken = {p.stem for p in images}  # reserve every original stem first
    used: set[str] = set()
    plans: list[PlannedOutput] = []
    for path in images:
        stem = path.stem
        if stem in used:
            k = 2
            while f"{stem}-{k}" in taken or f"{stem}-{k}" in used:
                k += 1
            stem = f"{stem}-{k}"
        used.add(stem)
        overlay_path = out / f"{stem}_overlay.jpg" if overlay else None
        plans.append(PlannedOutput(path, out / f"{stem}.png", overlay_path))
    return plans


def check_planned_outputs(plans: Sequence[PlannedOutput], inputs: Iterable[str | os.PathLike[str]],
                          *, force: bool = False) -> None:
    """Refuse (before any write) a planned mask or overlay that is one of ``inputs`` or a
    run's state, unless ``force`` (:func:`fcnkit.outputs.check_outputs`)."""
    outputs = [path for plan in plans for path in (plan.mask, plan.overlay) if path is not None]
    check_outputs(outputs, inputs, force=force)


def check_out_dir(out_dir: Path) -> None:
    """Raise InputError unless ``out_dir`` is (or can be created as) a writable directory."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(
            f"output directory {out_dir} is a file; pass a directory path (it is created if "
            "missing)"
        )
    for parent in out_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(
                f"output directory {out_dir} cannot be created because {parent} is a file; "
                "pass another directory"
            )
    # Writable? Checked before the model is loaded and any image is segmented.
    check_writable_directory(out_dir)


def _infer_num_classes(model: nn.Module, device: torch.device) -> int:
    """Number of classes a model predicts: its ``num_classes`` attribute or a probe pass."""
    value = getattr(model, "num_classes", None)
    if isinstance(value, int) and value > 0:
        return value
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64, device=device))
    if isinstance(out, dict):
        out = out["out"]
    return int(out.shape[1])


@torch.no_grad()
def predict_image(
    model: nn.Module,
    image: torch.Tensor | PictureTiles,
    *,
    num_classes: int,
    window: int | tuple[int, int] | None = None,
    overlap: float = DEFAULT_OVERLAP,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    tile: int | tuple[int, int] = DEFAULT_TILE,
    device: str | torch.device = "cpu",
    max_buffer_bytes: int | None = None,
) -> torch.Tensor:
    """Class indices for one RGB image in ``[0, 1]``.

    Args:
        model: fully convolutional model in eval mode on ``device``.
        image: (3, H, W) float tensor in ``[0, 1]``, or uint8 in ``[0, 255]`` (any view,
            e.g. ``torch.from_numpy(hwc).permute(2, 0, 1)``: a huge image then stays 3 bytes
            a pixel and only one tile at a time is converted to float), or a
            :class:`~fcnkit.inference.picture.PictureTiles` over a decoded RGB picture (no
            array copy at all; tiles are read from the picture). Not normalised: the
            model's preprocessing, as in training, is applied here.
        num_classes: number of classes the model predicts.
        window: tile size for sliding-window inference; ``None`` means whole image, unless
            ``H·W > max_pixels``, then tiles of ``tile`` pixels.
        overlap: fraction of a tile shared with its neighbour, in ``[0, 1)``.
        max_pixels: pixel budget for one whole-image pass (``None``: no budget).
        tile: tile size (int or (h, w)) used for images above ``max_pixels``.
        device: device the model is on.
        max_buffer_bytes: budget of the tiled path's logits buffer
            (:func:`~fcnkit.inference.labels.iter_logit_blocks`); ``None``: 32 MiB for an
            image tiled by the pixel budget, 64 MiB with a ``window``
            (:mod:`fcnkit.inference.tiling`).

    Returns:
        (H, W) class indices on the image's device: uint8 (num_classes <= 256), else int64.
    """
    preprocessing = model_preprocessing(model)  # what the model's weights expect

    def prepare(pixels: torch.Tensor) -> torch.Tensor:
        return preprocessing.apply(unit_float(pixels)).to(device)

    batch: torch.Tensor | PictureTiles
    if isinstance(image, PictureTiles):
        batch = image
    elif image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W) RGB, got shape {tuple(image.shape)}")
    else:
        batch = image.unsqueeze(0)
    height, width = batch.shape[-2:]
    chosen = as_window(window)
    budget = DEFAULT_LOGIT_BUFFER_BYTES
    if chosen is None and max_pixels is not None and height * width > max_pixels:
        # A huge image: the tight settings, so memory is the image's own plus a constant.
        chosen, budget = as_window(tile), HUGE_IMAGE_LOGIT_BUFFER_BYTES
    if max_buffer_bytes is not None:
        budget = max_buffer_bytes
    device = torch.device(device)
    # The raw image stays where it is; each tile is normalised and moved on its own, and
    # each finished block's argmax goes straight into a compact label map.
    dtype = torch.uint8 if num_classes <= 256 else torch.int64
    if chosen is None:  # one pass; labels without full-resolution logits when possible
        whole = batch.to_tensor() if isinstance(batch, PictureTiles) else batch
        labels = whole_image_labels(model, prepare(whole))[0]
        return labels.to(batch.device, dtype)
    labels = torch.empty((height, width), dtype=dtype)
    for top, left, block in iter_logit_blocks(
        model, batch, num_classes=num_classes, window=chosen, overlap=overlap,
        tile_transform=prepare, max_buffer_bytes=budget,
    ):
        labels[top : top + block.shape[2], left : left + block.shape[3]] = \
            channel_argmax(block)[0].to(labels.dtype)
    return labels


def predict_paths(
    model: nn.Module,
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    palette: Sequence[Sequence[int]] | None,
    overlay: bool = True,
    window: int | tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
    overlap: float = DEFAULT_OVERLAP,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    tile: int | tuple[int, int] = DEFAULT_TILE,
    num_classes: int | None = None,
    skip_bad: bool = False,
    on_bad: Callable[[Path, Exception], None] | None = None,
    on_done: Callable[[PlannedOutput, torch.Tensor], None] | None = None,
    force: bool = False,
) -> list[Path]:
    """Segment image files and write ``<stem>.png`` (+ ``<stem>_overlay.jpg``) into ``out_dir``.

    Args:
        model: fully convolutional model (moved to ``device`` and put in eval mode).
        inputs: image files and/or directories (see :func:`collect_images`).
        out_dir: output directory, created if missing.
        palette: RGB colour per class index for the PNGs and overlays (``None``: VOC).
        overlay: also write ``<stem>_overlay.jpg`` (class colours over the image).
        window: sliding-window tile size (int or (h, w)); ``None``: whole image unless
            the image exceeds ``max_pixels``.
        device: device to run the model on.
        overlap: fraction of a tile shared with its neighbour, in ``[0, 1)``.
        max_pixels: pixel budget above which images are tiled automatically.
        tile: tile size used for those images (int or (h, w)).
        num_classes: classes the model predicts (``None``: ``model.num_classes`` or a probe).
        skip_bad: on an unreadable image, call ``on_bad`` and go on instead of raising.
        on_bad: ``on_bad(path, error)`` for each skipped image (with ``skip_bad``).
        on_done: ``on_done(plan, labels)`` after each image's files are written.
        force: write outputs that are also inputs (:func:`fcnkit.outputs.check_outputs`;
            an input may then be replaced before it is read).

    Returns:
        Every file written, in order (per image: the mask PNG, then the overlay).

    Raises:
        InputError: an input is missing/corrupt (without ``skip_bad``), a directory holds
            no images, ``out_dir`` is a file, no input could be read, or an output is
            an input or a run's state (without ``force``).
    """
    out = Path(out_dir)
    check_out_dir(out)
    images = collect_images(inputs)
    plans = plan_outputs(images, out, overlay=overlay)
    check_planned_outputs(plans, images, force=force)
    device = torch.device(device)
    model.to(device).eval()
    num_classes = _mask_classes(model, device, num_classes)
    predict_options = dict(num_classes=num_classes, window=window, overlap=overlap,
                           max_pixels=max_pixels, tile=tile, device=device)
    written: list[Path] = []
    skipped = 0
    # Marked incomplete from the first write until the last (an interrupted run leaves
    # the marker; a rerun rewrites every output and clears it).
    with incomplete_until_done(out, "predictions", lazy=True) as marker:
        for plan in plans:
            done = _segment_file(model, plan, palette, marker, skip_bad=skip_bad,
                                 on_bad=on_bad, **predict_options)
            if done is None:
                skipped += 1
                continue
            labels, files = done
            written += files
            if on_done is not None:
                on_done(plan, labels)
    if skipped and skipped == len(plans):
        raise InputError(
            f"none of the {len(plans)} input images could be read; check the files "
            "(all were skipped as corrupt)"
        )
    return written


def _mask_classes(model: nn.Module, device: torch.device, num_classes: int | None) -> int:
    """The model's class count (given, or :func:`_infer_num_classes`), checked to fit an
    8-bit mask PNG."""
    if num_classes is None:
        num_classes = _infer_num_classes(model, device)
    if num_classes > 255:
        raise InputError(f"num_classes={num_classes} does not fit an 8-bit mask PNG (max 255); "
                         "predict with a model of at most 255 classes")
    return num_classes


def _segment_file(
    model: nn.Module, plan: PlannedOutput, palette: Sequence[Sequence[int]] | None,
    marker: IncompleteMarker, *, skip_bad: bool,
    on_bad: Callable[[Path, Exception], None] | None,
    **predict_options: Any,
) -> tuple[torch.Tensor, list[Path]] | None:
    """Read ``plan.source``, segment it (:func:`predict_image`) and write its mask PNG and
    overlay: ``(labels, files written)``, or None for an unreadable image with ``skip_bad``
    (after ``on_bad``). ``marker`` is marked before the first write."""
    try:
        # Kept as the decoded picture (4 bytes a pixel): tiles are copied out of it and
        # converted one at a time, so a huge image is never also held as an array.
        picture = read_image_picture(plan.source)
    except InputError as exc:
        if not skip_bad:
            raise
        if on_bad is not None:
            on_bad(plan.source, exc)
        return None
    labels = predict_image(model, PictureTiles(picture), **predict_options)
    mask = labels.cpu().to(torch.uint8).numpy()
    # The overlay blends into the picture's pixels as an array; the picture itself is
    # released before the mask is encoded (PNG encoding copies the mask once more).
    pixels = np.array(picture) if plan.overlay is not None else None
    del picture
    marker.mark()  # creates the directory; cleared when every image is written
    save_mask_png(plan.mask, mask, palette)
    if pixels is None or plan.overlay is None:
        return labels, [plan.mask]
    blend_into(pixels, mask, palette, OVERLAY_ALPHA)
    blended = Image.fromarray(pixels)
    del pixels  # only the blended picture is needed while the JPEG is written
    with atomic_path(plan.overlay) as tmp:
        blended.save(tmp, format="JPEG", quality=90)
    return labels, [plan.mask, plan.overlay]


def label_fractions(labels: torch.Tensor, classes: Sequence[str], *, num_classes: int,
                    top: int = 3) -> dict[str, float]:
    """The ``top`` most frequent predicted classes and their pixel fractions (4 decimals)."""
    # Counted a few million pixels at a time: a whole huge label map converted to int64
    # would cost 8 bytes a pixel (458 MiB at 2000 x 30000), more than the map itself.
    flat = labels.flatten()
    totals = torch.zeros(num_classes, dtype=torch.int64)
    for start in range(0, flat.numel(), _COUNT_CHUNK):
        part = flat[start : start + _COUNT_CHUNK].to(torch.int64).bincount(minlength=num_classes)
        if len(part) > len(totals):  # a label beyond the classes is still counted
            totals = torch.cat([totals, totals.new_zeros(len(part) - len(totals))])
        totals[: len(part)] += part
    counts = totals.tolist()
    total = max(1, sum(counts))
    ranked = sorted(((c, i) for i, c in enumerate(counts) if c), reverse=True)[:top]
    return {(classes[i] if i < len(classes) else str(i)): round(c / total, 4) for c, i in ranked}


def predict_checkpoint(
    checkpoint: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    overlay: bool = False,
    window: int | tuple[int, int] | None = None,
    overlap: float = DEFAULT_OVERLAP,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    device: str | torch.device = "cpu",
    skip_bad: bool = False,
    backend: str = "auto",
    precision: str = "fp32",
    channels_last: bool | str = False,
    threads: int | None = None,
    force: bool = False,
) -> dict[str, object]:
    """Segment images with a checkpoint: what ``fcnkit predict`` reports.

    Inputs and the output directory are checked before the checkpoint is loaded; a
    skipped image (with ``skip_bad``) is reported as a :class:`~fcnkit.errors.FcnkitWarning`.

    Args:
        checkpoint: a checkpoint file, or a run directory (its ``best.pt``, else ``last.pt``),
            or an ``.onnx`` model from ``fcnkit export`` (run by onnxruntime; ``backend="torch"``
            refuses it).
        inputs, out_dir, overlay, window, overlap, max_pixels, device, skip_bad: as for
            :func:`predict_paths` (the palette is the checkpoint's).
        backend, precision, channels_last, threads: how the model runs
            (:func:`fcnkit.inference.backends.open_backend`).
        force: write outputs that are inputs (the images or the checkpoint) or a run's
            state; refused otherwise before anything is loaded or written.

    Returns:
        ``out_dir``, ``num_images`` (segmented), ``skipped`` (unreadable inputs) and
        ``outputs``: per image ``input``, ``mask``, ``overlay`` (or None), ``size`` [H, W]
        and ``class_fractions`` (the three most frequent predicted classes).
    """
    out = Path(out_dir).expanduser()
    check_out_dir(out)
    inputs = list(inputs)  # read twice (checked here, segmented by predict_paths)
    images = collect_images(inputs)  # missing inputs / empty directories fail before loading
    sources = [*images, Path(checkpoint).expanduser()]
    check_planned_outputs(plan_outputs(images, out, overlay=overlay), sources, force=force)
    opened = open_backend(checkpoint, backend=backend, device=device, precision=precision,
                          channels_last=channels_last, threads=threads)
    model = opened.backend
    classes = opened.classes
    num_classes = opened.num_classes or None
    done: list[dict[str, object]] = []
    bad: list[str] = []

    def on_bad(path: Path, exc: Exception) -> None:
        bad.append(str(path))
        reason = first_line(exc)
        warn(f"skipped: {reason}" if str(path) in reason else f"skipped {path}: {reason}")

    def on_done(plan: PlannedOutput, labels: torch.Tensor) -> None:
        done.append({
            "input": str(plan.source),
            "mask": str(plan.mask),
            "overlay": str(plan.overlay) if plan.overlay is not None else None,
            "size": [int(labels.shape[0]), int(labels.shape[1])],
            "class_fractions": label_fractions(labels, classes,
                                               num_classes=num_classes or 0),
        })

    predict_paths(
        model, inputs, out, palette=opened.palette or None, overlay=overlay, window=window,
        device=device, overlap=overlap, max_pixels=max_pixels, num_classes=num_classes,
        skip_bad=skip_bad, on_bad=on_bad, on_done=on_done, force=force,
    )
    if bad:
        warn(f"{len(bad)} unreadable image(s) skipped")
    return {"out_dir": str(out), "num_images": len(done), "skipped": bad,
            "backend": model.describe(), "outputs": done}


def predict_samples(model: nn.Module, dataset: Any, count: int, *, num_classes: int,
                    device: str | torch.device = "cpu") -> list[tuple[Any, Any, torch.Tensor]]:
    """The first ``count`` items of a dataset with the model's prediction for each.

    Args:
        model: the model (put in eval mode here).
        dataset: yields ``(image, mask)`` with the image (3, H, W) float RGB in [0, 1]
            (:func:`fcnkit.data.open_dataset` without a transform).
        count: how many items (fewer when the dataset is shorter).
        num_classes: classes the model predicts.
        device: device the model is on.

    Returns:
        ``(image, mask, prediction)`` triples, prediction (H, W) class indices
        (:func:`predict_image`).
    """
    model.eval()
    samples = []
    for index in range(min(int(count), len(dataset))):
        image, mask = dataset[index]
        samples.append((image, mask, predict_image(model, image, num_classes=num_classes,
                                                   device=device)))
    return samples
