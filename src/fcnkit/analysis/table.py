"""The model table of ``fcnkit models``: what each registered model costs and sees.

:func:`model_summary` builds a model on PyTorch's meta device and reports its parameters,
FLOPs (:func:`count_flops`), output stride and receptive field (traced by
:func:`fcnkit.analysis.trace.receptive_field_of`); :data:`TABLE_VARIANTS` lists the rows.
It reports on models, so it sits above :mod:`fcnkit.models`, which imports nothing from
this package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from fcnkit.analysis.trace import receptive_field_of
from fcnkit.arith import as_pair
from fcnkit.models import build_model

__all__ = ["TABLE_VARIANTS", "count_flops", "describe_options", "model_summary"]

# Every registered model with its defaults, plus the backbone / variant choices.
TABLE_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("fcn32s", {}),
    ("fcn16s", {}),
    ("fcn8s", {}),
    ("fcn8s", {"faithful": True}),
    ("fcn8s", {"backbone": "resnet18"}),
    ("fcn8s", {"backbone": "resnet34"}),
    ("fcn8s", {"backbone": "resnet50"}),
    ("fcn8s", {"backbone": "resnet101"}),
    ("fcn8s", {"backbone": "mobilenet_v3_large"}),
    ("fcn32s", {"backbone": "resnet18", "upsample": "deconv"}),
    ("fcn_resnet18_d2l", {}),
    ("fcn_dilated", {}),
    ("fcn_dilated", {"backbone": "resnet50", "output_stride": 16}),
    ("context_module", {}),
)


def describe_options(options: Mapping[str, Any]) -> str:
    """``"backbone=resnet18 upsample=deconv"`` (empty for the defaults)."""
    return " ".join(f"{k}={v}" for k, v in options.items())


def count_flops(model: Any, size: Sequence[int]) -> int:
    """FLOPs of one forward pass on a ``(1, 3, H, W)`` input (torch FlopCounterMode).

    FlopCounterMode counts 2 FLOPs per multiply-add of convolutions (transposed ones too)
    and matrix products; element-wise ops, pooling and ``F.interpolate`` count 0.
    """
    x = torch.zeros(1, 3, *size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())


def model_summary(
    name: str, size: Sequence[int] = (320, 480), *, num_classes: int = 21,
    receptive_field: bool = True, **options: Any,
) -> dict[str, Any]:
    """One row of the model table: parameters, GFLOPs at ``size``, stride, receptive field.

    The model is built on PyTorch's meta device (no weights allocated, no arithmetic run),
    which makes the whole table a matter of seconds.

    Args:
        name, num_classes, **options: as for :func:`fcnkit.models.build_model` (options
            that load weight files do not apply).
        size: input ``(H, W)`` for the FLOP count and the receptive-field trace.
        receptive_field: trace the receptive field with :func:`receptive_field_of` (side
            length in input pixels of the output pixels' field).

    Returns:
        ``{"model", "options", "params", "trainable_params", "gflops", "output_stride",
        "receptive_field"}``; ``receptive_field`` is None when not traced.
    """
    h, w = as_pair(size, "size", minimum=1)
    # On the meta device: shapes without storage, so nothing is allocated or computed;
    # parameter counts, FlopCounterMode's counts and the traced geometry are the same.
    with torch.device("meta"):
        model = build_model(name, num_classes=num_classes, **options).eval()
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rf = None
        if receptive_field:
            record = receptive_field_of(model, (h, w))[-1]
            values = record.size if isinstance(record.size, tuple) else (record.size,)
            # Fractions (continuous footprints after transposed layers) become floats.
            plain = [int(v) if v == int(v) else float(v) for v in values]
            rf = plain[0] if len(set(plain)) == 1 else plain
        gflops = count_flops(model, (h, w)) / 1e9
    return {
        "model": name,
        "options": dict(options),
        "params": params,
        "trainable_params": trainable,
        "gflops": gflops,
        "output_stride": int(getattr(model, "output_stride", 0)) or None,
        "receptive_field": rf,
    }
