"""What the training loop minimises and how: the loss, the optimizer and the LR schedule.

* :func:`segmentation_loss`: mean per-pixel cross-entropy over the pixels not labelled
  ``IGNORE_INDEX`` (Long, Shelhamer & Darrell 2015, §4), optionally class-weighted.
* :func:`median_frequency_weights`: class weights by median-frequency balancing
  (Eigen & Fergus, ICCV 2015, §4.1).
* :func:`build_optimizer`: SGD with momentum (the FCN paper's choice) or AdamW.
* :func:`build_scheduler`: the "poly" decay ``lr = base * (1 - step/total) ** power``
  (Chen et al., DeepLab 2016), stepped once per optimizer step as in torchvision's
  ``references/segmentation/train.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from fcnkit.constants import IGNORE_INDEX
from fcnkit.errors import InputError

__all__ = [
    "build_optimizer",
    "build_scheduler",
    "median_frequency_weights",
    "parse_class_weights",
    "poly_factor",
    "segmentation_loss",
    "set_schedule_position",
]


def segmentation_loss(
    logits: torch.Tensor, masks: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """Mean per-pixel cross-entropy over non-ignored pixels (weighted mean with ``weight``).

    Equal to ``F.cross_entropy(logits, masks, weight=weight, ignore_index=IGNORE_INDEX)``
    except that a batch whose pixels are all ignored gives a zero loss that still depends
    on the logits (so every DDP rank runs the same backward), not NaN (0/0). Computed as
    ``sum / total weight`` on the device: no value is read back to the host, so the
    training step never waits for the GPU.
    """
    logits = logits.float()
    summed = F.cross_entropy(logits, masks, weight=weight, ignore_index=IGNORE_INDEX,
                             reduction="sum")
    valid = masks != IGNORE_INDEX
    if weight is None:
        total = valid.sum(dtype=summed.dtype)
    else:
        # torch's "mean" divides by the summed weights of the valid targets.
        total = (weight[torch.where(valid, masks, 0)] * valid).sum(dtype=summed.dtype)
    return summed / total.clamp(min=torch.finfo(logits.dtype).tiny)


def parse_class_weights(spec: str, num_classes: int) -> torch.Tensor:
    """Explicit class weights ``"w0,w1,..."``: one non-negative number per class.

    Raises:
        InputError: not ``num_classes`` finite non-negative numbers.
    """
    try:
        values = [float(v) for v in str(spec).split(",") if v.strip()]
    except ValueError:
        values = []
    if len(values) != num_classes or any(v < 0 or not math.isfinite(v) for v in values):
        raise InputError(
            f"class_weights {spec!r} must be 'auto' or {num_classes} comma-separated "
            "non-negative numbers (one per class)"
        )
    return torch.tensor(values, dtype=torch.float32)


def median_frequency_weights(masks: Iterable[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Median-frequency balancing (Eigen & Fergus 2015): ``w_c = median(freq) / freq_c``.

    ``freq_c`` = pixels of class c / pixels of the images where c is present, counted over
    ``masks`` (``IGNORE_INDEX`` excluded). A class that never occurs gets weight 0. The
    median is ``torch.nanmedian``'s (the lower middle value for an even count).
    """
    pixels = torch.zeros(num_classes, dtype=torch.float64)
    image_pixels = torch.zeros(num_classes, dtype=torch.float64)
    for mask in masks:
        flat = torch.as_tensor(mask).reshape(-1)
        valid = flat[flat != IGNORE_INDEX]
        counts = torch.bincount(valid, minlength=num_classes)[:num_classes].double()
        pixels += counts
        image_pixels += (counts > 0).double() * valid.numel()
    freq = torch.where(image_pixels > 0, pixels / image_pixels.clamp(min=1), torch.nan)
    median = torch.nanmedian(freq)
    return torch.where(freq > 0, median / freq, torch.zeros_like(freq)).float()


def build_optimizer(
    model: nn.Module, *, name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD with momentum (``name="sgd"``) or AdamW over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def poly_factor(step: int, total_steps: int, power: float) -> float:
    """Poly decay (DeepLab, Chen et al. 2016): ``(1 - step / total) ** power``, 0 at the end."""
    return (1.0 - min(step, total_steps) / max(1, total_steps)) ** power


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, power: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR with the poly factor (as torchvision's segmentation reference)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: poly_factor(step, total_steps, power)
    )


def set_schedule_position(
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    optimizer: torch.optim.Optimizer,
    step: int,
    total_steps: int,
    power: float,
) -> None:
    """Move the poly schedule to ``step`` (and set every group's lr to match).

    Used when a run saved with N processes resumes on M: the steps per epoch differ, so the
    schedule restarts at the epoch boundary counted in the new step count.
    """
    if scheduler.last_epoch == step:
        return
    scheduler.last_epoch = step
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * poly_factor(step, total_steps, power)
