"""Tiling geometry for sliding-window inference: where the windows start along one axis,
which input rows a strip of a transposed convolution's output needs, and the *bands* of
an upsampled axis (runs of output rows fed by the same input rows) with their weights,
on which labels from low-resolution scores work (:mod:`fcnkit.inference.lowres`).

Pure integer arithmetic, no torch. When to tile and with which window is inference's
policy (:mod:`fcnkit.inference.tiling`); :mod:`fcnkit.inference.labels` uses both.
"""

from __future__ import annotations

import math

import numpy as np

from fcnkit.errors import InputError

__all__ = [
    "band_of_rows",
    "band_weights",
    "band_windows",
    "check_overlap",
    "output_bands",
    "sliding_window_starts",
    "transposed_input_span",
    "transposed_input_spans",
    "window_corner_pixels",
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


def output_bands(size: int, offset: int, *, kernel: int, stride: int, padding: int,
                 input_size: int) -> np.ndarray:
    """Output rows ``[0, size)`` of a transposed convolution (full-map row = row +
    ``offset``, e.g. a crop offset) grouped into *bands* of consecutive rows fed by the same
    input rows (:func:`transposed_input_spans`): an ``(B, 4)`` int64 array of
    ``(start, stop, first, last)`` — output rows ``[start, stop)``, input rows
    ``[first, last)``.

    >>> output_bands(16, 0, kernel=16, stride=8, padding=4, input_size=2).tolist()
    [[0, 4, 0, 1], [4, 12, 0, 2], [12, 16, 1, 2]]
    """
    rows = np.arange(size, dtype=np.int64) + offset
    first, last = transposed_input_spans(rows, rows + 1, kernel=kernel, stride=stride,
                                         padding=padding, input_size=input_size)
    new = np.ones(size, dtype=bool)
    new[1:] = (first[1:] != first[:-1]) | (last[1:] != last[:-1])
    starts = np.flatnonzero(new)
    stops = np.append(starts[1:], size)
    return np.stack([starts, stops, first[starts], last[starts]], axis=1)


def band_of_rows(bands: np.ndarray) -> np.ndarray:
    """Per output row of :func:`output_bands`' ``[0, size)``, the index of its band.

    >>> band_of_rows(np.array([[0, 4, 0, 1], [4, 12, 0, 2], [12, 16, 1, 2]])).tolist()[2:6]
    [0, 0, 1, 1]
    """
    return np.repeat(np.arange(len(bands)), bands[:, 1] - bands[:, 0])


def band_windows(bands: np.ndarray) -> np.ndarray:
    """Per band of :func:`output_bands` whose input rows are at most 2, the index j of its
    window among the 2-row windows ``(j − 1, j)`` of the edge-replicated input (rows −1
    and n repeat rows 0 and n − 1): a span ``[i, i + 2)`` is window i + 1, the top span
    ``[0, 1)`` window 0, any other one-row span ``[i, i + 1)`` window i + 1 (a superset).

    >>> band_windows(np.array([[0, 4, 0, 1], [4, 12, 0, 2], [12, 16, 1, 2]])).tolist()
    [0, 1, 2]
    """
    first, last = bands[:, 2], bands[:, 3]
    return np.where((last - first == 1) & (first == 0), 0, first + 1)


def window_corner_pixels(rows: np.ndarray, cols: np.ndarray, height: int,
                         width: int) -> np.ndarray:
    """``(4, Bh · Bw)`` int64: for each cell (row band × column band of
    :func:`output_bands`, all windows at most 2 × 2), the flat indices in an
    ``height × width`` input of its window's corners — top-left, top-right, bottom-left,
    bottom-right. Window j (:func:`band_windows`) holds rows j − 1 and j, clamped to the
    input, so a one-row edge window is its row twice.

    >>> bands = np.array([[0, 4, 0, 1], [4, 12, 0, 2], [12, 16, 1, 2]])
    >>> window_corner_pixels(bands[:1], bands[1:2], 2, 2).tolist()
    [[0], [1], [0], [1]]
    """
    pairs = []
    for bands, size in ((rows, height), (cols, width)):
        index = band_windows(bands)
        pairs.append((np.clip(index - 1, 0, size - 1), np.clip(index, 0, size - 1)))
    (top, bottom), (left, right) = pairs
    return np.stack([(r[:, None] * width + c[None, :]).ravel()
                     for r in (top, bottom) for c in (left, right)])


def band_weights(kind: str, taps: tuple[float, ...], stride: int, padding: int,
                  size: int, offset: int, input_size: int,
                  bands: np.ndarray) -> np.ndarray | None:
    """``(size, T)`` float64 weights of output rows ``[0, size)`` (full-map row = row +
    offset) on the input rows ``first, first + 1, …`` of their band's window (T = the
    longest window). ``kind`` "deconv": ``taps`` is the 1-D kernel, the weight of input
    row i on output row o is ``taps[o + padding - i * stride]``. ``kind`` "interpolate":
    ``taps = (factor,)``, PyTorch's bilinear source index ``max(0, (o + ½)/f − ½)``
    (``align_corners=False``) split between its floor and the next row (clamped). None
    when a weight falls outside the window (the blend could not be trusted)."""
    out = np.arange(size, dtype=np.int64) + offset
    band = band_of_rows(bands)
    first, last = bands[band, 2], bands[band, 3]
    width = int((bands[:, 3] - bands[:, 2]).max())
    weights = np.zeros((size, width), dtype=np.float64)
    if kind == "interpolate":
        factor = taps[0]
        source = np.maximum(0.0, (out + 0.5) / factor - 0.5)
        low = np.minimum(np.floor(source).astype(np.int64), input_size - 1)
        lam = source - low
        high = np.minimum(low + 1, input_size - 1)
        pairs = [(low, 1.0 - lam), (high, lam)]
    else:
        kernel = np.asarray(taps)
        pairs = []
        for t in range(width):
            i = first + t
            index = out + padding - i * stride
            inside = (index >= 0) & (index < len(kernel)) & (i < last)
            pairs.append((i, np.where(inside, kernel[np.clip(index, 0, len(kernel) - 1)], 0.0)))
    rows = np.arange(size)
    for i, w in pairs:
        local = i - first
        used = w != 0
        if ((local < 0) | (local >= width) | (i >= last))[used].any():
            return None
        np.add.at(weights, (rows[used], local[used]), w[used])
    return weights
