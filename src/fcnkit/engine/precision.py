"""Numeric precision and memory layout for training and inference.

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

import torch

from fcnkit.errors import InputError

__all__ = [
    "PRECISIONS",
    "Precision",
    "cpu_has_native_bf16",
    "resolve_precision",
    "resolve_channels_last",
    "autocast",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` ("fp32", "bf16", "fp16"), the autocast ``dtype``
    (None for fp32) and ``reason``, one line saying why it was chosen."""

    name: str
    dtype: torch.dtype | None
    reason: str


def cpu_has_native_bf16() -> bool:
    """True when this CPU executes bf16 natively (AVX512-BF16 or AMX tiles).

    Uses PyTorch's own CPU feature probes (``torch.cpu._is_avx512_bf16_supported``,
    ``_is_amx_tile_supported``); False when this torch build has neither probe.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in probes:
        probe = getattr(torch.cpu, name, None)
        if probe is not None and bool(probe()):
            return True
    return False


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> Precision:
    """Turn a ``--precision`` value into a :class:`Precision` for ``device``.

    Raises:
        InputError: an unknown name, or fp16 on a CPU (PyTorch's CPU fp16 autocast exists
            but is far slower than fp32 without AMX-FP16; refuse rather than crawl).
    """
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
    return Precision(precision, _DTYPES[precision], f"{precision} (asked for)")


def resolve_channels_last(channels_last: bool | str, device: str | torch.device = "cpu"
                          ) -> bool:
    """``"auto"`` → True: NHWC is at least as fast for these conv nets on CPU (oneDNN) and
    CUDA (cuDNN) in docs/benchmarks.md; a bool is returned as given."""
    if isinstance(channels_last, bool):
        return channels_last
    if channels_last != "auto":
        raise InputError(f"channels_last must be True, False or 'auto', got {channels_last!r}")
    return torch.device(device).type in ("cpu", "cuda")


@contextlib.contextmanager
def autocast(precision: Precision, device: str | torch.device = "cpu") -> Iterator[None]:
    """``torch.autocast`` for a resolved precision; a no-op for fp32."""
    if precision.dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=precision.dtype):
        yield
