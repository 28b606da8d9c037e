"""Where every kernel tap of a convolution lands: the picture of Dumoulin & Visin's figures.

A direct convolution is drawn on its padded input; a transposed convolution as its
equivalent direct convolution -- stride 1 over the input with ``s - 1`` zeros inserted
between pixels and ``d(k - 1) - p`` padding (plus ``output_padding`` at the bottom/right),
the flipped kernel (:func:`fcnkit.arith.transposed_equivalent`; Dumoulin & Visin, "A guide
to convolution arithmetic", relationships 8-14). :func:`tap_layout` computes that grid
(which cell is padding, input or an inserted zero, and which input pixel each input cell
holds) and, for every output position, the grid cell under every kernel tap:

    tap (u, v) of output (i, j) reads cell (i*s_h + u*d_h, j*s_w + v*d_w)

with ``s`` the stride of the drawn convolution (the layer's, or 1 for a transposed one).
:mod:`fcnkit.viz.animation` draws it; nothing here knows about pictures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fcnkit.arith.sizes import (
    as_pair,
    conv_output_size,
    conv_transpose_output_size,
)
from fcnkit.errors import InputError, first_line

__all__ = ["INPUT", "INSERTED_ZERO", "PADDING", "TapLayout", "animation_cost", "tap_layout"]

# Cell kinds of the drawn input grid.
PADDING, INPUT, INSERTED_ZERO = 0, 1, 2


@dataclass(frozen=True)
class TapLayout:
    """The grid a convolution reads and its taps (2-D, rows then columns).

    Attributes:
        cells: int array over the drawn input grid: PADDING, INPUT or INSERTED_ZERO.
        input_index: int array of the same shape: flat index of the original input pixel
            at each INPUT cell, -1 elsewhere.
        output_shape: (rows, cols) of the output.
        taps: int array (output rows, output cols, kernel rows * kernel cols, 2): the grid
            cell under every kernel tap for every output position (row-major taps).
        kernel, stride, padding, dilation, output_padding: the layer as given.
        transposed: whether the layer is a transposed convolution (drawn as the direct
            stride-1 convolution on the zero-inserted, padded input).
        grid_stride: stride of the drawn (direct) convolution: the layer's for a direct
            convolution, 1 for a transposed one.
    """

    cells: np.ndarray
    input_index: np.ndarray
    output_shape: tuple[int, int]
    taps: np.ndarray
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    output_padding: tuple[int, int]
    transposed: bool
    grid_stride: tuple[int, int]

    @property
    def positions(self) -> int:
        """Number of output positions."""
        return self.output_shape[0] * self.output_shape[1]


def _axis_cells(n: int, k: int, s: int, p: int, d: int, op: int,
                transposed: bool) -> tuple[list[int], list[int], int, int]:
    """(cell kinds, input index, output size, drawn stride) along one axis."""
    if not transposed:
        try:
            out = conv_output_size(n, k, s, p, d)
        except InputError as exc:
            raise InputError(first_line(exc)) from None
        return [PADDING] * p + [INPUT] * n + [PADDING] * p, \
            [-1] * p + list(range(n)) + [-1] * p, out, s
    if p > d * (k - 1):
        raise InputError(f"padding {p} > dilation*(kernel-1) = {d * (k - 1)}: the equivalent "
                         "convolution would crop; not drawable")
    # PyTorch's checks (output_padding < max(stride, dilation), a non-empty output).
    out = conv_transpose_output_size(n, k, s, p, d, op)
    # transposed_equivalent(out, ...) recovers output_padding as the units the stride
    # skipped, which is op only when op < s; with dilation > s PyTorch also accepts
    # s <= op < d. The grid itself holds for every op: s - 1 zeros between pixels,
    # d(k - 1) - p before and d(k - 1) - p + op after (Dumoulin & Visin, relationship 14).
    before, zeros = d * (k - 1) - p, s - 1
    after = before + op
    # before-padding, input with zeros inserted, after-padding
    kinds, index = [PADDING] * before, [-1] * before
    for i in range(n):
        kinds.append(INPUT)
        index.append(i)
        if i < n - 1:
            kinds += [INSERTED_ZERO] * zeros
            index += [-1] * zeros
    kinds += [PADDING] * after
    index += [-1] * after
    return kinds, index, out, 1


def _drawn_axis(n: int, k: int, s: int, p: int, d: int, op: int, transposed: bool) -> int:
    """Cells drawn along one axis: the padded input, or for a transposed convolution its
    zero-inserted, padded equivalent input ((n - 1) s + 1 + 2 (d (k - 1) - p) + op;
    Dumoulin & Visin 2016, relationship 14)."""
    if transposed:
        return (n - 1) * s + 1 + 2 * max(0, d * (k - 1) - p) + op
    return n + 2 * p


def animation_cost(
    size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
    padding: Sequence[int], dilation: Sequence[int], transposed: bool,
    output_padding: Sequence[int],
) -> tuple[int, int] | None:
    """(frames, grid cells) an animation of this layer would draw (all args (H, W) pairs),
    counted with plain arithmetic before :func:`tap_layout` builds anything, for
    :func:`fcnkit.limits.check_animation`. None for invalid geometry, which
    :func:`tap_layout` refuses with its own message (this function only measures)."""
    cells, frames = 1, 1
    for axis in range(2):
        n, k, s = size[axis], kernel[axis], stride[axis]
        p, d, op = padding[axis], dilation[axis], output_padding[axis]
        if min(n, k, s, d) < 1 or min(p, op) < 0:
            return None
        cells *= _drawn_axis(n, k, s, p, d, op, transposed)
        try:
            out = (conv_transpose_output_size(n, k, s, p, d, op) if transposed
                   else conv_output_size(n, k, s, p, d))
        except ValueError:
            return None
        frames *= max(0, int(out))
    return frames, cells


def tap_layout(
    size: Any,
    kernel: Any,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    transposed: bool = False,
    output_padding: Any = 0,
) -> TapLayout:
    """The grid and kernel taps of one 2-D convolution (all arguments N or (H, W), PyTorch
    semantics; ``size`` is the input size of the layer).

    Raises:
        InputError: for impossible geometry, an empty output, or a transposed layer whose
            padding exceeds ``dilation*(kernel - 1)`` (its equivalent direct convolution
            would crop the zero-inserted input, which is not a grid to draw).
    """
    size2, k2 = as_pair(size, "size", minimum=1), as_pair(kernel, "kernel", minimum=1)
    s2, d2 = as_pair(stride, "stride", minimum=1), as_pair(dilation, "dilation", minimum=1)
    p2 = as_pair(padding, "padding", minimum=0)
    op2 = as_pair(output_padding, "output_padding", minimum=0)
    if not transposed and any(op2):
        raise InputError("output_padding only applies to a transposed convolution")
    axes = [_axis_cells(size2[a], k2[a], s2[a], p2[a], d2[a], op2[a], transposed)
            for a in range(2)]
    (row_kind, row_index, oh, gs_h), (col_kind, col_index, ow, gs_w) = (
        (np.array(kinds), np.array(index), out, gs) for kinds, index, out, gs in axes)
    both_input = (row_kind[:, None] == INPUT) & (col_kind[None, :] == INPUT)
    any_padding = (row_kind[:, None] == PADDING) | (col_kind[None, :] == PADDING)
    cells = np.where(both_input, INPUT, np.where(any_padding, PADDING, INSERTED_ZERO))
    input_index = np.where(cells == INPUT, row_index[:, None] * size2[1] + col_index[None, :],
                           -1)
    # tap (u, v) of output (i, j) reads cell (i*s_h + u*d_h, j*s_w + v*d_w)
    oy, ox, ky, kx = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(k2[0]),
                                 np.arange(k2[1]), indexing="ij")
    taps = np.stack([oy * gs_h + ky * d2[0], ox * gs_w + kx * d2[1]], axis=-1)
    taps = taps.reshape(oh, ow, k2[0] * k2[1], 2).astype(np.int64)
    return TapLayout(cells, input_index, (oh, ow), taps, k2, s2, p2, d2, op2, bool(transposed),
                     (gs_h, gs_w))
