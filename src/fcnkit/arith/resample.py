"""Resampling as receptive-field geometry: ``F.interpolate`` and adaptive pooling, one axis.

A resampling layer maps output pixel j to a window of input pixels around ``q*j + offset``
(``q = n_in / n_out``, or ``1 / scale_factor`` when a scale is given). It is written here
as an *equivalent layer* ``(k', s', p')`` with fractional values (the conventions of
:meth:`fcnkit.arith.ReceptiveField.then_equivalent`): output j has its centre at
``s'*j + (k' - 1)/2 - p'`` and its footprint is ``[s'*j - p', s'*j - p' + k' - 1]``, which
contains every input pixel it reads. The source-index maps are PyTorch's
(aten/src/ATen/native/UpSample.h: ``area_pixel_compute_source_index``,
``nearest_idx``/``nearest_neighbor_exact_compute_source_index``; AdaptiveAveragePooling.cpp:
``start_index = floor(j*in/out)``, ``end_index = ceil((j + 1)*in/out)``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from fcnkit.errors import InputError

__all__ = ["adaptive_pool_equivalent", "interpolate_equivalent", "resample_equivalent"]

INTERPOLATE_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic")


def resample_equivalent(q: Fraction, offset: Fraction,
                        half_width: Fraction) -> tuple[Fraction, Fraction, Fraction]:
    """``(k', s', p')`` of a layer whose output j reads input pixels within
    ``q*j + offset ± half_width``.

    ``k' = 1 + 2*half_width``, ``s' = q``, ``p' = half_width - offset`` (so that
    ``centre(j) = s'*j + (k' - 1)/2 - p' = q*j + offset``).
    """
    return 1 + 2 * half_width, q, half_width - offset


def interpolate_equivalent(mode: str, align_corners: bool | None, n_in: int, n_out: int,
                           scale: Any = None) -> tuple[Any, ...]:
    """Equivalent ``(k', s', p')`` of ``F.interpolate`` along one axis.

    Args:
        mode: "nearest", "nearest-exact", "linear", "bilinear", "trilinear" or "bicubic"
            ("area" is adaptive average pooling: :func:`adaptive_pool_equivalent`).
        align_corners: as passed to ``F.interpolate`` (linear modes).
        n_in, n_out: input and output sizes along the axis.
        scale: the ``scale_factor`` along the axis, if one was given (PyTorch then uses
            ``1/scale`` as the step, not ``n_in/n_out``).

    Returns:
        ``(k', s', p')`` as Fractions; the footprint ``[s'*j - p', s'*j - p' + k' - 1]``
        contains every input pixel output j reads.

    Raises:
        InputError: for a mode not listed above.
    """
    if scale is not None:
        q = 1 / Fraction(float(scale)).limit_denominator(1_000_000)
    else:
        q = Fraction(n_in, n_out)
    if mode == "nearest":
        # src = floor(j*q): within [j*q - (1 - 1/D), j*q], D = denominator of q
        slack = 1 - Fraction(1, q.denominator)
        return resample_equivalent(q, -slack / 2, slack / 2)
    if mode == "nearest-exact":
        # src = floor((j + 1/2)*q)
        base = q / 2
        slack = 1 - Fraction(1, base.denominator)
        return resample_equivalent(q, base - slack / 2, slack / 2)
    if mode in ("linear", "bilinear", "trilinear", "bicubic"):
        taps = 1 if mode != "bicubic" else 2  # bicubic reads floor(x) - 1 .. floor(x) + 2
        if align_corners:
            # x = j*(in - 1)/(out - 1); with one input or one output pixel every x is 0:
            # keep the step in/out, so that the footprint j*q ± half still holds pixel 0.
            if n_in > 1 and n_out > 1:
                q = Fraction(n_in - 1, n_out - 1)
            offset = Fraction(0)
        else:
            offset = q / 2 - Fraction(1, 2)  # x = (j + 1/2)*q - 1/2
        den = math.lcm(q.denominator, offset.denominator)
        half = taps - Fraction(1, den) if den > 1 else Fraction(taps - 1)
        if mode == "bicubic":
            half = Fraction(2)
        return resample_equivalent(q, offset, half)
    raise InputError(f"interpolate mode {mode!r} is not supported by the receptive-field "
                     f"geometry; use one of {', '.join(INTERPOLATE_MODES)} or 'area'")


def adaptive_pool_equivalent(n_in: int, n_out: int) -> tuple[tuple[Any, ...], bool]:
    """``(k', s', p')`` of adaptive pooling along one axis, and whether it is exact.

    Even bins (``n_in % n_out == 0``) are an ordinary pooling ``(k, k, 0)`` with
    ``k = n_in / n_out``, exactly. Uneven bins cover ``floor(j*q) .. ceil((j + 1)*q) - 1``
    (``q = n_in / n_out``): the returned footprint ``[j*q - 1, (j + 1)*q]`` contains them
    (an upper bound).
    """
    if n_out == n_in:
        return (1, 1, 0), True
    if n_in % n_out == 0:
        k = n_in // n_out
        return (k, k, 0), True
    q = Fraction(n_in, n_out)
    return (q + 2, q, Fraction(1)), False
