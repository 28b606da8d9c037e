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

Example::

    from fcnkit.engine.evaluate import evaluate
    cm = evaluate(model, loader, num_classes=9, window=512)
    print(cm.compute()["miou"])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from fcnkit.engine.inference import predict_labels
from fcnkit.metrics import ConfusionMatrix

__all__ = ["evaluate", "split_batch"]


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
    overlap: float = 0.33,
    ignore_index: int = 255,
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
            labels = predict_labels(
                model, images, num_classes=num_classes, window=window, overlap=overlap
            )
            cm.update(labels.cpu(), masks.cpu())
    finally:
        model.train(was_training)
    _all_reduce_(cm, device)
    return cm


def _all_reduce_(cm: ConfusionMatrix, device: torch.device) -> None:
    """Sum ``cm.matrix`` over all processes in place (no-op without torch.distributed)."""
    import torch.distributed as dist

    from fcnkit.engine.distributed import all_reduce_sum

    if not (dist.is_available() and dist.is_initialized()):
        return
    # gloo reduces CPU tensors, nccl only CUDA ones: reduce on the backend's device. The
    # int64 counts are summed exactly (no float rounding of large pixel counts).
    where = device if dist.get_backend() == "nccl" else torch.device("cpu")
    cm.matrix = all_reduce_sum(cm.matrix.to(where, dtype=torch.int64)).cpu()
