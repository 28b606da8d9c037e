"""Tiling geometry for sliding-window inference: where the windows start along one axis,
which input rows a strip of a transposed convolution's output needs.

Pure integer arithmetic, no torch. When to tile and with which window is inference's
policy (:mod:`fcnkit.inference.tiling`); :mod:`fcnkit.inference.labels` uses both.
"""

from __future__ import annotations

import math

import numpy as np

from fcnkit.errors import InputError

__all__ = [
    "check_overlap",
    "sliding_window_starts",
    "transposed_input_span",
    "transposed_input_spans",
]

def check_overlap(overlap: float) -> float:
    """``overlap`` as a float in ``[0, 1)``, or InputError naming the argument."""
    overlap = float(overlap)
    if not 0.0 <= overlap < 1.0:
        raise InputError(
            f"overlap must be in [0, 1) (fraction of a window shared by neighbours), "
            f"got {overlap}"
        )
    return overlap


def sliding_window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start offsets of the tiles that cover ``[0, size)`` along one dimension.

    The step between tiles is ``stride = max(1, floor(window · (1 − overlap)))`` (so
    neighbours share at least ``overlap`` of a window), tiles are placed at
    ``0, stride, 2·stride, ...`` and the last one is moved flush with the border at
    ``size − window``. The number of tiles is ``ceil((size − window) / stride) + 1``.
    If ``window >= size`` there is one tile, starting at 0, of length ``size``.

    Args:
        size: length of the dimension in pixels (>= 1).
        window: tile length in pixels (>= 1).
        overlap: fraction in ``[0, 1)``.

    Returns:
        Strictly increasing start offsets; tile ``i`` covers ``[s_i, s_i + min(window, size))``.
    """
    if size < 1 or window < 1:
        raise InputError(f"size and window must be positive, got size={size}, window={window}")
    overlap = check_overlap(overlap)
    if window >= size:
        return [0]
    stride = max(1, math.floor(window * (1.0 - overlap)))
    count = math.ceil((size - window) / stride) + 1
    # Tiles at multiples of the stride, the last one clamped flush with the border.
    return [min(i * stride, size - window) for i in range(count)]


def transposed_input_span(
    out_start: int, out_stop: int, *, kernel: int, stride: int, padding: int,
    input_size: int,
) -> tuple[int, int]:
    """Input rows ``[i0, i1)`` of a transposed convolution that produce output rows
    ``[out_start, out_stop)``, one dimension (PyTorch ``ConvTranspose`` semantics, dilation 1).

    Input row i adds ``w[o + padding - i*stride]`` to output row o when
    ``0 <= o + padding - i*stride < kernel``, so output row o depends on
    ``ceil((o + padding - kernel + 1) / stride) <= i <= floor((o + padding) / stride)``.
    Running the same layer (same padding) on input rows ``[i0, i1)`` alone gives output
    row o at local row ``o - i0*stride``, with the same terms: strip-wise upsampling then
    equals the whole map's rows exactly. The span is widened where that local map would
    not reach the wanted rows (``kernel < stride + padding``): ``i0*stride <= out_start``
    and ``(i1 - 1)*stride - 2*padding + kernel >= out_stop``; rows added that way touch no
    wanted row. Clamped to ``[0, input_size)``.

    The same span serves bilinear ``F.interpolate`` by an integer factor f, whose
    transposed-convolution equivalent is :func:`fcnkit.arith.upsampling_recipe` (f).
    """
    if not 0 <= out_start < out_stop:
        raise InputError(f"output rows must satisfy 0 <= start < stop, got [{out_start}, "
                         f"{out_stop})")
    first, last = transposed_input_spans(np.array([out_start]), np.array([out_stop]),
                                         kernel=kernel, stride=stride, padding=padding,
                                         input_size=input_size)
    return int(first[0]), int(last[0])


def transposed_input_spans(
    out_start: np.ndarray, out_stop: np.ndarray, *, kernel: int, stride: int, padding: int,
    input_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`transposed_input_span` for arrays of output ranges (unchecked), elementwise:
    ``(first, last)`` int64 arrays. The formula of that function, vectorised."""
    start = np.asarray(out_start, dtype=np.int64)
    stop = np.asarray(out_stop, dtype=np.int64)
    first = -((kernel - 1 - start - padding) // stride)  # ceil((o0 + p - k + 1) / s)
    first = np.minimum(first, start // stride)  # local row of o0 = o0 - i0*s >= 0
    last = (stop - 1 + padding) // stride  # floor((o1 - 1 + p) / s)
    last = np.maximum(last, -((kernel - stop - 2 * padding) // stride))  # ceil((o1+2p-k)/s)
    return np.maximum(0, first), np.minimum(input_size, last + 1)
