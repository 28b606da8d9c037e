"""What the training loop minimises and how: the loss, the optimizer and the LR schedule.

* :func:`segmentation_loss`: mean per-pixel cross-entropy over the pixels not labelled
  ``IGNORE_INDEX`` (Long, Shelhamer & Darrell 2015, §4), optionally class-weighted.
* :func:`median_frequency_weights`: class weights by median-frequency balancing
  (Eigen & Fergus, ICCV 2015, §4.1).
* :func:`build_optimizer`: SGD with momentum (the FCN paper's choice) or AdamW.
* :func:`build_scheduler`: the "poly" decay ``lr = base * (1 - step/total) ** power``
  (Chen et al., DeepLab 2016), stepped once per optimizer step as in torchvision's
  ``references/segmentation/train.py``.
* :func:`training_loss`: the loss of a model output, with torchvision's auxiliary-head term
  ``loss(out) + aux_weight * loss(aux)`` (``aux_weight`` 0.5 in torchvision's references).

Two recipes (:data:`RECIPES`): ``"modern"`` (the defaults above: mean loss, momentum 0.9,
poly decay, augmentation) and ``"caffe"``, the FCN paper's (Long et al. 2015, §4.3 and the
``solver.prototxt`` of ``fcn.berkeleyvision.org``'s voc-fcn32s/16s/8s): the loss *summed*
over pixels (Caffe's ``normalize: false``), SGD with momentum 0.99, a fixed learning rate
of 1e-10 / 1e-12 / 1e-14 for FCN-32s / 16s / 8s, weight decay 5e-4, biases at twice the
learning rate without decay (``lr_mult: 2, decay_mult: 0``), frozen bilinear upsampling
(``lr_mult: 0``) and whole images, batch 1, no augmentation (:func:`caffe_recipe_defaults`,
:func:`build_caffe_optimizer`).

The rest of the package asks this module what a config's recipe means, never
``recipe == "caffe"`` itself: :func:`augments` (random crops, flips and jitter or whole
images), :func:`loss_reduction`, :func:`prepare_model` (frozen upsampling),
:func:`optimizer_for` and :func:`with_recipe_defaults` (the recipe's settings under the
ones a user gave).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from fcnkit.constants import IGNORE_INDEX
from fcnkit.errors import InputError
from fcnkit.training.config import RECIPES as _RECIPES
from fcnkit.training.config import TrainConfig
from fcnkit.training.cross_entropy import summed_cross_entropy

__all__ = [
    "RECIPES",
    "augments",
    "build_caffe_optimizer",
    "build_optimizer",
    "build_scheduler",
    "caffe_recipe_defaults",
    "loss_reduction",
    "median_frequency_weights",
    "optimizer_for",
    "parse_class_weights",
    "poly_factor",
    "prepare_model",
    "segmentation_loss",
    "set_schedule_position",
    "training_loss",
    "with_recipe_defaults",
]


def segmentation_loss(
    logits: torch.Tensor, masks: torch.Tensor, weight: torch.Tensor | None,
    *, reduction: str = "mean",
) -> torch.Tensor:
    """Mean per-pixel cross-entropy over non-ignored pixels (weighted mean with ``weight``).

    Equal to ``F.cross_entropy(logits, masks, weight=weight, ignore_index=IGNORE_INDEX)``
    except that a batch whose pixels are all ignored gives a zero loss that still depends
    on the logits (so every DDP rank runs the same backward), not NaN (0/0). Computed as
    ``sum / total weight`` on the device: no value is read back to the host, so the
    training step never waits for the GPU. The sum is :func:`summed_cross_entropy`'s (for
    channels_last logits of 16 classes or more on a CPU, one autograd node without layout
    copies). ``reduction="sum"``: the
    (weighted) sum over the non-ignored pixels, Caffe's ``SoftmaxWithLoss`` with
    ``normalize: false``.
    """
    summed = summed_cross_entropy(logits, masks, weight)
    if reduction == "sum":
        return summed
    valid = masks != IGNORE_INDEX
    if weight is None:
        total = valid.sum(dtype=summed.dtype)
    else:
        # torch's "mean" divides by the summed weights of the valid targets.
        total = (weight[torch.where(valid, masks, 0)] * valid).sum(dtype=summed.dtype)
    return summed / total.clamp(min=torch.finfo(summed.dtype).tiny)


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


def training_loss(
    output: torch.Tensor | Mapping[str, torch.Tensor], masks: torch.Tensor,
    weight: torch.Tensor | None, *, reduction: str = "mean", aux_weight: float = 0.5,
) -> torch.Tensor:
    """:func:`segmentation_loss` of ``output`` (logits, or torchvision-style
    ``{"out", "aux"}``): ``loss(out) + aux_weight * loss(aux)`` (torchvision's
    ``references/segmentation/train.py`` uses 0.5)."""
    if not isinstance(output, Mapping):
        return segmentation_loss(output, masks, weight, reduction=reduction)
    loss = segmentation_loss(output["out"], masks, weight, reduction=reduction)
    if "aux" in output:
        loss = loss + aux_weight * segmentation_loss(output["aux"], masks, weight,
                                                     reduction=reduction)
    return loss


RECIPES = _RECIPES  # one list, in training.config (torch-free)
# Fixed learning rates of the FCN paper's solvers (summed loss): Long et al. 2015 §4.3,
# fcn.berkeleyvision.org voc-fcn32s/16s/8s solver.prototxt (base_lr 1e-10, 1e-12, 1e-14).
_CAFFE_LR = {"fcn32s": 1e-10, "fcn16s": 1e-12, "fcn8s": 1e-14}


def caffe_recipe_defaults(model: str) -> dict[str, Any]:
    """TrainConfig settings of the FCN paper's recipe for ``model`` (see the module
    docstring); the caller keeps any value the user gave explicitly.

    Raises:
        InputError: a model the paper gives no learning rate for.
    """
    if model not in _CAFFE_LR:
        raise InputError(f"recipe 'caffe' is the FCN paper's for {', '.join(_CAFFE_LR)}; "
                         f"model {model!r} has no published learning rate: pass lr explicitly "
                         "or use the modern recipe")
    return {"lr": _CAFFE_LR[model], "optimizer": "sgd", "momentum": 0.99,
            "weight_decay": 5e-4, "lr_power": 0.0, "batch_size": 1, "upsample": "bilinear"}


def build_caffe_optimizer(
    model: nn.Module, *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.SGD:
    """SGD with Caffe's per-parameter multipliers: weights at ``lr`` with ``weight_decay``,
    biases at ``2 * lr`` without decay (``lr_mult: 2, decay_mult: 0``); frozen parameters
    (the bilinear upsamplers, ``lr_mult: 0``) are left out."""
    weights, biases = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (biases if name.endswith("bias") else weights).append(param)
    groups = [{"params": weights, "lr": lr, "weight_decay": weight_decay},
              {"params": biases, "lr": 2 * lr, "weight_decay": 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=momentum)


# --------------------------------------------------------------------------------------------
# What a config's recipe means (the one place that tells the recipes apart)


def _is_caffe(recipe: str) -> bool:
    return recipe == "caffe"


def augments(config: TrainConfig) -> bool:
    """Whether training images are randomly scaled, cropped, flipped and jittered; the
    caffe recipe trains on whole images, as the FCN paper did."""
    return not _is_caffe(config.recipe)


def loss_reduction(config: TrainConfig) -> str:
    """``"sum"`` over the pixels for the caffe recipe (``normalize: false``), else ``"mean"``
    (:func:`segmentation_loss`)."""
    return "sum" if _is_caffe(config.recipe) else "mean"


def prepare_model(model: nn.Module, config: TrainConfig) -> None:
    """What the recipe changes in a freshly built model: the caffe recipe freezes the
    upsampling Deconvolutions (Caffe's ``lr_mult: 0``)."""
    if not _is_caffe(config.recipe):
        return
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d):
            module.weight.requires_grad_(False)


def optimizer_for(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``model``: :func:`build_caffe_optimizer` or
    :func:`build_optimizer` with the config's hyper-parameters."""
    if _is_caffe(config.recipe):
        return build_caffe_optimizer(model, lr=config.lr, momentum=config.momentum,
                                     weight_decay=config.weight_decay)
    return build_optimizer(model, name=config.optimizer, lr=config.lr,
                           momentum=config.momentum, weight_decay=config.weight_decay)


def with_recipe_defaults(given: Mapping[str, Any]) -> dict[str, Any]:
    """TrainConfig settings ``given`` by a user, over the defaults of the recipe they name
    (:func:`caffe_recipe_defaults` for ``recipe="caffe"``; the modern recipe's defaults are
    TrainConfig's own). The model defaults to TrainConfig's."""
    if not _is_caffe(given.get("recipe", "modern")):
        return dict(given)
    model = given.get("model", TrainConfig.__dataclass_fields__["model"].default)
    return {**caffe_recipe_defaults(model), **given}
