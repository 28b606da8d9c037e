"""Evaluation: run a model over a dataset and accumulate one confusion matrix.

The FCN paper's metrics (pixel accuracy, mean accuracy, mean IU, frequency-weighted IU;
Long, Shelhamer & Darrell 2015, §5) are functions of the confusion matrix summed over the
*whole* dataset, so :func:`evaluate` returns that matrix and leaves the arithmetic to
:class:`fcnkit.metrics.ConfusionMatrix`. Pixels labelled ``ignore_index`` (VOC's 255
"void" band, and the padding ``pad_collate`` adds around smaller images of a batch) never
enter the matrix.

Under ``torchrun`` every process evaluates its own shard of the data and the matrices are
summed with ``all_reduce``; the eval sampler shards without padding, so the sum equals a
single-process evaluation exactly.

:func:`evaluate_checkpoint` is ``fcnkit eval``: checkpoint + dataset split in, metrics out,
sharded over the processes when launched by ``torchrun``.

Example::

    from fcnkit.inference.evaluate import evaluate
    cm = evaluate(model, loader, num_classes=9, window=512)
    print(cm.compute()["miou"])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from fcnkit.arith.tiling import check_overlap
from fcnkit.constants import IGNORE_INDEX
from fcnkit.data import open_dataset
from fcnkit.data.transforms import eval_transform, pad_collate
from fcnkit.errors import InputError, warn
from fcnkit.inference.backends import (
    OpenedBackend,
    open_backend,
    read_source,
    source_preprocessing,
)
from fcnkit.inference.labels import as_window, predict_labels
from fcnkit.inference.tiling import DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP, DEFAULT_TILE
from fcnkit.metrics import BoundaryMetrics, ConfusionMatrix
from fcnkit.runtime import distributed as ddp
from fcnkit.runtime.device import resolve_device
from fcnkit.runtime.distributed import all_reduce_sum

__all__ = ["evaluate", "evaluate_checkpoint", "split_batch"]


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, masks)`` from a loader batch: a pair/sequence, or a dict with those keys.

    Raises:
        ValueError: the batch has neither form.
    """
    if isinstance(batch, Mapping):
        for ki, km in (("image", "mask"), ("images", "masks")):
            if ki in batch and km in batch:
                return batch[ki], batch[km]
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(
        "evaluate: a batch must be (images, masks) or a dict with 'image' and 'mask', got "
        f"{type(batch).__name__}"
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    num_classes: int,
    device: str | torch.device = "cpu",
    window: int | tuple[int, int] | None = None,
    overlap: float = DEFAULT_OVERLAP,
    ignore_index: int = IGNORE_INDEX,
    boundary: BoundaryMetrics | None = None,
    max_pixels: int | None = None,
) -> ConfusionMatrix:
    """Accumulate the confusion matrix of ``model`` over every pixel ``loader`` yields.

    The model is put in ``eval()`` mode (and restored to its previous mode afterwards);
    inference runs under ``torch.no_grad()``.

    Args:
        model: maps normalised (N, 3, H, W) images to (N, num_classes, H, W) logits.
        loader: iterable of batches ``(images (N, 3, H, W) float, masks (N, H, W) int64)``,
            e.g. a DataLoader with ``fcnkit.data.transforms.pad_collate``.
        num_classes: number of classes; mask values other than ``ignore_index`` must be
            below it.
        device: device to run the model on (the model is moved there).
        window: ``None`` for whole-image inference, else the sliding-window tile size in
            pixels (int or (h, w)); overlapping tiles' logits are averaged.
        overlap: fraction of a tile shared with its neighbour, in ``[0, 1)``.
        ignore_index: mask value excluded from the matrix (VOC "void", batch padding).
        boundary: optional :class:`fcnkit.metrics.BoundaryMetrics` updated with the same
            predictions (summed over processes like the matrix).
        max_pixels: without a ``window``, a batch whose images exceed this many pixels is
            segmented by tiles of :data:`fcnkit.inference.tiling.DEFAULT_TILE` (as ``fcnkit
            predict`` does), so a huge image does not need whole-image activations.

    Returns:
        A :class:`fcnkit.metrics.ConfusionMatrix`; when ``torch.distributed`` is initialised
        it holds the sum over all processes (every rank gets the same matrix).
    """
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    cm = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    try:
        for batch in loader:
            images, masks = split_batch(batch)
            images = images.to(device, non_blocking=True)
            chosen = window
            if (chosen is None and max_pixels is not None
                    and images.shape[-2] * images.shape[-1] > max_pixels):
                chosen = DEFAULT_TILE
            labels = predict_labels(
                model, images, num_classes=num_classes, window=chosen, overlap=overlap
            )
            cm.update(labels.cpu(), masks.cpu())
            if boundary is not None:
                boundary.update(labels.cpu(), masks.cpu())
    finally:
        model.train(was_training)
    _all_reduce_(cm, device)
    if boundary is not None:
        _all_reduce_(boundary.trimap, device)
        boundary.intersection = _reduced(boundary.intersection, device)
        boundary.union = _reduced(boundary.union, device)
    return cm


def _all_reduce_(cm: ConfusionMatrix, device: torch.device) -> None:
    """Sum ``cm.matrix`` over all processes in place (no-op without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    # gloo reduces CPU tensors, nccl only CUDA ones: reduce on the backend's device. The
    # int64 counts are summed exactly (no float rounding of large pixel counts).
    where = device if dist.get_backend() == "nccl" else torch.device("cpu")
    cm.matrix = all_reduce_sum(cm.matrix.to(where, dtype=torch.int64)).cpu()


def _reduced(counts: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``counts`` (int64) summed over all processes (unchanged without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return counts
    where = device if dist.get_backend() == "nccl" else torch.device("cpu")
    return all_reduce_sum(counts.to(where, dtype=torch.int64)).cpu()


class _CountingLoader:
    """Wraps a loader and counts the images (batch rows) it yields."""

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader
        self.images = 0

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            self.images += int(split_batch(batch)[0].shape[0])
            yield batch


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    data: str,
    *,
    split: str = "val",
    window: int | tuple[int, int] | None = None,
    overlap: float = DEFAULT_OVERLAP,
    batch_size: int = 1,
    workers: int = 0,
    device: str | torch.device = "cpu",
    skip_bad: bool = False,
    backend: str = "auto",
    precision: str = "fp32",
    channels_last: bool | str = False,
    threads: int | None = None,
    boundary_width: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a dataset split: what ``fcnkit eval`` reports.

    Launched by ``torchrun``, every process evaluates its shard of the split
    (:class:`~fcnkit.runtime.distributed.ShardedEvalSampler`, no padding) and the confusion
    matrices and image counts are summed, so every rank returns the single-process result.

    Args:
        checkpoint: a checkpoint file, or a run directory (its ``best.pt``, else
            ``last.pt``; :func:`fcnkit.runtime.checkpoint.run_checkpoint`), or an ``.onnx``
            model from ``fcnkit export`` (run by onnxruntime; ``backend="torch"`` refuses it).
        data: dataset spec for :func:`fcnkit.data.open_dataset` (``voc:ROOT``, ...).
        split: split name.
        window: ``None`` for whole-image inference, else the sliding-window size.
        overlap: fraction of a window shared by neighbouring windows, in ``[0, 1)``.
        batch_size: images per batch (> 1 pads smaller images with ignored pixels).
        workers: DataLoader worker processes.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (under torchrun ``cuda`` means the
            process's ``cuda:LOCAL_RANK``).
        skip_bad: drop unreadable samples with a warning instead of raising.
        backend, precision, channels_last, threads: how the model runs
            (:func:`fcnkit.inference.backends.open_backend`).
        boundary_width: when given (pixels, >= 1), also the boundary metrics within that
            distance of the ground-truth boundaries (:class:`fcnkit.metrics.BoundaryMetrics`)
            under ``"boundary"``; exact with ``batch_size=1`` (padding is void, and void
            counts as a label for the trimap band).
        max_pixels: without a ``window``, images above this many pixels are segmented by
            tiles (as ``fcnkit predict`` does); ``None``: always whole images.

    Returns:
        :meth:`fcnkit.metrics.ConfusionMatrix.compute`'s metrics plus ``backend`` (a
        one-line description of how the model ran), ``num_images``,
        ``skipped`` (bad samples dropped), ``classes`` (the checkpoint's names, else the
        dataset's) and ``checkpoint`` (the file read).

    Raises:
        InputError: a bad argument, checkpoint or dataset, or a split without images.
    """
    _check_settings(batch_size, workers, boundary_width)
    window = as_window(window)
    overlap = check_overlap(overlap)
    device = resolve_device(device)
    dataset, opened = _open_data_and_model(
        checkpoint, data, split, skip_bad=skip_bad, backend=backend, device=device,
        precision=precision, channels_last=channels_last, threads=threads)
    classes = _report_classes(opened.classes, dataset)
    boundary = (BoundaryMetrics(int(dataset.num_classes), width=boundary_width)
                if boundary_width is not None else None)
    cm, images = _evaluate_shards(
        opened.backend, dataset, device=device, batch_size=batch_size, workers=workers,
        window=window, overlap=overlap, boundary=boundary, max_pixels=max_pixels)
    result: dict[str, Any] = dict(cm.compute())
    if boundary is not None:
        result["boundary"] = boundary.compute()
    result["num_images"] = images
    result["skipped"] = int(getattr(dataset, "skipped", 0) or 0)
    result["classes"] = classes
    result["checkpoint"] = opened.source
    result["backend"] = opened.backend.describe()
    return result


def _check_settings(batch_size: int, workers: int, boundary_width: int | None) -> None:
    """InputError for a batch size below 1, negative workers or a boundary width below 1."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise InputError(f"workers must be >= 0, got {workers}")
    if boundary_width is not None and boundary_width < 1:
        raise InputError(f"boundary_width must be >= 1 pixel, got {boundary_width}")


def _open_data_and_model(
    checkpoint: str | os.PathLike[str], data: str, split: str, *, skip_bad: bool,
    backend: str, device: torch.device, precision: str, channels_last: bool | str,
    threads: int | None,
) -> tuple[Any, OpenedBackend]:
    """The split (normalised as the weights expect) and the backend, checked to agree on
    the class count; InputError for a split without images."""
    source = read_source(checkpoint)
    # Images are normalised as the weights expect (models.preprocess), whatever the backend.
    normalize = source_preprocessing(source).transform()
    dataset = open_dataset(data, split, transform=eval_transform(normalize), skip_bad=skip_bad)
    if len(dataset) == 0:
        raise InputError(f"dataset {data}: split {split!r} holds no images; "
                         "pass a split with images (e.g. val)")
    opened = open_backend(source, backend=backend, device=device, precision=precision,
                          channels_last=channels_last, threads=threads,
                          num_classes=int(dataset.num_classes))
    return dataset, opened


def _report_classes(checkpoint_classes: list[str], dataset: Any) -> list[str]:
    """The class names of the report: the checkpoint's, else the dataset's (a warning when
    both exist and differ)."""
    data_classes = list(getattr(dataset, "classes", None) or [])
    if checkpoint_classes and data_classes and checkpoint_classes != data_classes:
        warn(f"checkpoint classes {checkpoint_classes} differ from the dataset's "
             f"{data_classes}; the report uses the checkpoint's names")
    return checkpoint_classes or data_classes


def _evaluate_shards(
    model: nn.Module, dataset: Any, *, device: torch.device, batch_size: int, workers: int,
    window: tuple[int, int] | None, overlap: float, boundary: BoundaryMetrics | None,
    max_pixels: int | None,
) -> tuple[ConfusionMatrix, int]:
    """:func:`evaluate` over this process's shard under torchrun (the whole split alone):
    the matrix summed over the processes and the number of images evaluated by all."""
    owns_group = not ddp.is_initialized()
    info = ddp.init_distributed(device)
    try:
        if info.distributed and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", info.local_rank)
        sampler = (ddp.ShardedEvalSampler(len(dataset), rank=info.rank,
                                          world_size=info.world_size)
                   if info.distributed else None)
        loader = _CountingLoader(DataLoader(
            dataset, batch_size=batch_size, shuffle=False, sampler=sampler,
            num_workers=workers, collate_fn=pad_collate,
        ))
        cm = evaluate(model, loader, num_classes=int(dataset.num_classes), device=device,
                      window=window, overlap=overlap, boundary=boundary,
                      max_pixels=max_pixels)
        where = device if info.backend == "nccl" else torch.device("cpu")
        images = int(ddp.all_reduce_sum(torch.tensor([loader.images], device=where)).item())
    finally:
        if owns_group:
            ddp.cleanup_distributed()
    return cm, images
