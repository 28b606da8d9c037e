"""Numeric precision, memory layout and backend names for training and inference.

This module imports torch only inside its functions, so the command line can offer
:data:`PRECISIONS`, :data:`LAYOUTS` and :data:`BACKENDS` without loading torch.

``precision`` is one of :data:`PRECISIONS`:

* ``"fp32"``: plain float32.
* ``"bf16"`` / ``"fp16"``: ``torch.autocast`` with that dtype. Weights (and so checkpoints)
  stay float32; convolutions and matmuls run in the low-precision dtype.
* ``"auto"``: bf16 on CUDA and on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX,
  detected at run time), fp32 elsewhere. On a CPU without those instructions bf16 autocast
  is emulated and usually *slower* than fp32 (docs/benchmarks.md has the measurements), so
  ``auto`` does not pick it there.

``channels_last`` (NHWC) lets oneDNN / cuDNN pick their fastest convolution kernels;
:func:`resolve_channels_last` decides ``"auto"`` the same way for every command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fcnkit.errors import InputError

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "LAYOUTS",
    "FP32",
    "Precision",
    "cpu_has_native_bf16",
    "resolve_precision",
    "resolve_channels_last",
    "autocast",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LAYOUTS = ("auto", "on", "off")
#: Inference backends (:mod:`fcnkit.inference.backends`).
BACKENDS = ("torch", "onnxruntime")


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` ("fp32", "bf16", "fp16"), the autocast ``dtype``
    (None for fp32) and ``reason``, one line saying why it was chosen."""

    name: str
    dtype: Any  # torch.dtype | None
    reason: str


#: Plain float32 (no autocast).
FP32 = Precision("fp32", None, "fp32")


def cpu_has_native_bf16() -> bool:
    """True when this CPU executes bf16 natively (AVX512-BF16 or AMX tiles).

    Uses PyTorch's own CPU feature probes (``torch.cpu._is_avx512_bf16_supported``,
    ``_is_amx_tile_supported``); False when this torch build has neither probe.
    """
    # local: import cost (torch, ~3 s: the command line's parser reads PRECISIONS here)
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in probes:
        probe = getattr(torch.cpu, name, None)
        if probe is not None and bool(probe()):
            return True
    return False


def resolve_precision(precision: str, device: Any = "cpu") -> Precision:
    """Turn a ``--precision`` value into a :class:`Precision` for ``device``.

    Raises:
        InputError: an unknown name, or fp16 on a CPU (PyTorch's CPU fp16 autocast exists
            but is far slower than fp32 without AMX-FP16; refuse rather than crawl).
    """
    # local: import cost (torch, ~3 s: the command line's parser reads PRECISIONS here)
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r} is unknown; choose one of "
                         f"{', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return Precision("bf16", torch.bfloat16, "auto: bf16 autocast on CUDA")
        if device.type == "cpu" and cpu_has_native_bf16():
            return Precision("bf16", torch.bfloat16,
                             "auto: bf16 autocast (this CPU has AVX512-BF16/AMX)")
        return Precision("fp32", None,
                         f"auto: fp32 (no native bf16 on this {device.type.upper()})")
    if precision == "fp16" and device.type == "cpu" and not getattr(
        torch.cpu, "_is_amx_fp16_supported", lambda: False
    )():
        raise InputError("--precision fp16 needs a GPU (or a CPU with AMX-FP16); "
                         "pass --precision bf16 or fp32 on this CPU")
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    return Precision(precision, dtypes[precision], f"{precision} (asked for)")


def resolve_channels_last(channels_last: bool | str, device: Any = "cpu") -> bool:
    """Whether to run in channels_last: a bool as given, ``"on"``/``"off"``, or ``"auto"``.

    ``"auto"`` is on for CPU and CUDA, where oneDNN / cuDNN have NHWC convolution kernels
    (docs/benchmarks.md has the measurements), off elsewhere (MPS).
    """
    if isinstance(channels_last, bool):
        return channels_last
    if channels_last not in LAYOUTS:
        raise InputError(f"channels_last must be one of {', '.join(LAYOUTS)}, got "
                         f"{channels_last!r}")
    if channels_last != "auto":
        return channels_last == "on"
    # local: import cost (torch, ~3 s: the command line's parser reads PRECISIONS here)
    import torch

    return torch.device(device).type in ("cpu", "cuda")


@contextlib.contextmanager
def autocast(precision: Precision, device: Any = "cpu") -> Iterator[None]:
    """``torch.autocast`` for a resolved precision; a no-op for fp32."""
    # local: import cost (torch, ~3 s: the command line's parser reads PRECISIONS here)
    import torch

    if precision.dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=precision.dtype):
        yield
