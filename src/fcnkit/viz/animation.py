"""Animations of convolution arithmetic in the style of Dumoulin & Visin's conv_arithmetic.

A frame per output position: the (padded, possibly zero-inserted) input grid with the
kernel footprint on it, and the output grid filling in. A transposed convolution is drawn
as its equivalent direct convolution -- stride 1 over the input with ``s - 1`` zeros
inserted between pixels and ``d(k - 1) - p`` (+ ``output_padding`` at the bottom/right)
padding, see :func:`fcnkit.arith.sizes.transposed_equivalent` -- which is how the
conv_arithmetic figures show it.

:func:`animation_geometry` computes the picture's geometry (cell kinds and footprints);
:func:`write_conv_animation` renders it with matplotlib (Agg) and writes a GIF with Pillow
(and optionally a PNG contact sheet of every frame), atomically and deterministically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fcnkit.arith.sizes import (
    as_pair,
    conv_output_size,
    conv_transpose_output_size,
    transposed_equivalent,
)
from fcnkit.atomic import atomic_path
from fcnkit.errors import InputError
from fcnkit.limits import MAX_ANIMATION_FRAMES
from fcnkit.viz import pyplot

__all__ = [
    "PADDING",
    "INPUT",
    "INSERTED_ZERO",
    "AnimationGeometry",
    "animation_geometry",
    "write_conv_animation",
]

# Cell kinds of the drawn input grid.
PADDING, INPUT, INSERTED_ZERO = 0, 1, 2
MAX_FRAMES = MAX_ANIMATION_FRAMES


@dataclass(frozen=True)
class AnimationGeometry:
    """What one animation draws (2-D, rows then columns).

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
    def frames(self) -> int:
        """Number of frames: one per output position."""
        return self.output_shape[0] * self.output_shape[1]


def animation_geometry(
    size: Any,
    kernel: Any,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    transposed: bool = False,
    output_padding: Any = 0,
) -> AnimationGeometry:
    """Compute what to draw for one convolution (all arguments N or (H, W), PyTorch
    semantics; ``size`` is the input size of the layer being animated).

    Raises:
        InputError: for impossible geometry, an empty output, more than 400 output
            positions, or a transposed layer whose padding exceeds ``dilation*(kernel - 1)``
            (its equivalent direct convolution would crop, which is not drawn).
    """
    size2, k2, s2 = as_pair(size, "size"), as_pair(kernel, "kernel"), as_pair(stride, "stride")
    p2, d2 = as_pair(padding, "padding"), as_pair(dilation, "dilation")
    op2 = as_pair(output_padding, "output_padding")
    if any(v < 1 for v in (*size2, *k2, *s2, *d2)) or any(v < 0 for v in (*p2, *op2)):
        raise InputError("size, kernel, stride and dilation must be >= 1; padding and "
                         "output_padding >= 0")
    if not transposed and any(op2):
        raise InputError("output_padding only applies to a transposed convolution "
                         "(add --transposed)")
    rows, cols = [], []
    index_axes = []
    out_shape = []
    grid_stride = []
    for axis in range(2):
        n, k, s, p, d, op = (size2[axis], k2[axis], s2[axis], p2[axis], d2[axis], op2[axis])
        if transposed:
            if op >= s:
                raise InputError(f"output_padding {op} must be smaller than stride {s} to "
                                 "draw the equivalent direct convolution")
            if p > d * (k - 1):
                raise InputError(f"padding {p} > dilation*(kernel-1) = {d * (k - 1)}: the "
                                 "equivalent convolution would crop; not drawable")
            try:
                full = conv_transpose_output_size(n, k, s, p, d, op)
                eq = transposed_equivalent(full, k, s, p, d)
            except ValueError as exc:
                raise InputError(str(exc).splitlines()[0]) from None
            # cells along the axis: before-padding, input with zeros inserted, after-padding
            kinds = [PADDING] * eq.padding_before
            index = [-1] * eq.padding_before
            for i in range(n):
                kinds.append(INPUT)
                index.append(i)
                if i < n - 1:
                    kinds += [INSERTED_ZERO] * eq.zeros_inserted
                    index += [-1] * eq.zeros_inserted
            kinds += [PADDING] * eq.padding_after
            index += [-1] * eq.padding_after
            out = full
            grid_stride.append(1)
        else:
            try:
                out = conv_output_size(n, k, s, p, d)
            except ValueError as exc:
                raise InputError(str(exc).splitlines()[0]) from None
            kinds = [PADDING] * p + [INPUT] * n + [PADDING] * p
            index = [-1] * p + list(range(n)) + [-1] * p
            grid_stride.append(s)
        if out < 1:
            raise InputError(f"the output would be empty (size {out}); enlarge --size")
        (rows if axis == 0 else cols).append(kinds)
        index_axes.append(index)
        out_shape.append(out)
    if out_shape[0] * out_shape[1] > MAX_FRAMES:
        raise InputError(f"{out_shape[0]}x{out_shape[1]} output positions is more than "
                         f"{MAX_FRAMES} frames; use a smaller --size")
    row_kind, col_kind = np.array(rows[0]), np.array(cols[0])
    cells = np.where((row_kind[:, None] == INPUT) & (col_kind[None, :] == INPUT), INPUT,
                     np.where((row_kind[:, None] == PADDING) | (col_kind[None, :] == PADDING),
                              PADDING, INSERTED_ZERO))
    ri, ci = np.array(index_axes[0]), np.array(index_axes[1])
    input_index = np.where(cells == INPUT, ri[:, None] * size2[1] + ci[None, :], -1)
    taps = np.zeros((out_shape[0], out_shape[1], k2[0] * k2[1], 2), dtype=np.int64)
    for oy in range(out_shape[0]):
        for ox in range(out_shape[1]):
            t = 0
            for ky in range(k2[0]):
                for kx in range(k2[1]):
                    taps[oy, ox, t] = (oy * grid_stride[0] + ky * d2[0],
                                       ox * grid_stride[1] + kx * d2[1])
                    t += 1
    return AnimationGeometry(cells, input_index, (out_shape[0], out_shape[1]), taps, k2, s2,
                             p2, d2, op2, bool(transposed), (grid_stride[0], grid_stride[1]))


_COLOURS = {
    PADDING: "#ffffff",
    INPUT: "#6baed6",
    INSERTED_ZERO: "#e5e5e5",
}
_TAP = {PADDING: "#8c8fb3", INPUT: "#08306b", INSERTED_ZERO: "#6e7191"}
_FOOTPRINT = "#c6dbef"
_OUT_EMPTY, _OUT_DONE, _OUT_NOW = "#ffffff", "#41ab5d", "#00441b"


def _render_frames(geom: AnimationGeometry, dpi: int = 80) -> list[np.ndarray]:
    plt = pyplot()
    from matplotlib.patches import Rectangle

    h, w = geom.cells.shape
    oh, ow = geom.output_shape
    gap = 2
    total_w = w + gap + ow
    total_h = max(h, oh)
    scale = 0.42
    fig = plt.figure(figsize=(max(4.0, total_w * scale + 0.4), total_h * scale + 1.0), dpi=dpi)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.96 * total_h / (total_h + 1.6)))
    ax.set_xlim(-0.6, total_w + 0.1)
    ax.set_ylim(total_h + 0.1, -0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    in_top = (total_h - h) / 2
    out_top = (total_h - oh) / 2
    in_cells = {}
    for (y, x), kind in np.ndenumerate(geom.cells):
        style = {"linestyle": "--", "edgecolor": "#999999"} if kind == PADDING else \
            {"linestyle": "-", "edgecolor": "#4d4d4d"}
        rect = Rectangle((x, in_top + y), 1, 1, facecolor=_COLOURS[int(kind)], linewidth=0.8,
                         **style)
        ax.add_patch(rect)
        in_cells[(y, x)] = rect
    out_cells = {}
    for y in range(oh):
        for x in range(ow):
            rect = Rectangle((w + gap + x, out_top + y), 1, 1, facecolor=_OUT_EMPTY,
                             edgecolor="#4d4d4d", linewidth=0.8)
            ax.add_patch(rect)
            out_cells[(y, x)] = rect
    kind = "transposed convolution" if geom.transposed else "convolution"
    parts = [f"k={_fmt(geom.kernel)}", f"s={_fmt(geom.stride)}", f"p={_fmt(geom.padding)}"]
    if geom.dilation != (1, 1):
        parts.append(f"d={_fmt(geom.dilation)}")
    if geom.transposed and geom.output_padding != (0, 0):
        parts.append(f"output_padding={_fmt(geom.output_padding)}")
    fig.suptitle(f"{kind}: " + ", ".join(parts), fontsize=10)
    ax.text(w / 2, -0.35, "input" + (" (zeros inserted, padded)" if geom.transposed else ""),
            ha="center", va="bottom", fontsize=8)
    ax.text(w + gap + ow / 2, out_top - 0.35, "output", ha="center", va="bottom", fontsize=8)
    frames = []
    for oy in range(oh):
        for ox in range(ow):
            taps = [tuple(t) for t in geom.taps[oy, ox]]
            y0, x0 = taps[0]
            y1, x1 = taps[-1]
            for (y, x), rect in in_cells.items():
                if (y, x) in taps:
                    rect.set_facecolor(_TAP[int(geom.cells[y, x])])
                elif y0 <= y <= y1 and x0 <= x <= x1:
                    rect.set_facecolor(_FOOTPRINT)
                else:
                    rect.set_facecolor(_COLOURS[int(geom.cells[y, x])])
            for (y, x), rect in out_cells.items():
                index = y * ow + x
                now = oy * ow + ox
                rect.set_facecolor(_OUT_NOW if index == now else
                                   _OUT_DONE if index < now else _OUT_EMPTY)
            fig.canvas.draw()
            frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return frames


def _fmt(pair: Sequence[int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]},{pair[1]}"


def write_conv_animation(
    geom: AnimationGeometry,
    gif_path: str | os.PathLike[str] | None,
    sheet_path: str | os.PathLike[str] | None = None,
    frame_ms: int = 500,
) -> int:
    """Render ``geom`` and write a GIF (one frame per output position) and/or a contact sheet.

    Args:
        geom: from :func:`animation_geometry`.
        gif_path: GIF file to write, or None.
        sheet_path: PNG contact sheet (all frames tiled like the output grid), or None.
        frame_ms: frame duration in milliseconds.

    Returns:
        The number of frames. Files are written atomically and are byte-for-byte
        reproducible for the same arguments.
    """
    from PIL import Image

    if gif_path is None and sheet_path is None:
        raise InputError("nothing to write: give a GIF path and/or a contact-sheet path")
    frames = [Image.fromarray(f) for f in _render_frames(geom)]
    if gif_path is not None:
        paletted = [f.convert("P", palette=Image.Palette.ADAPTIVE, colors=64) for f in frames]
        with atomic_path(gif_path) as tmp:
            paletted[0].save(tmp, format="GIF", save_all=True, append_images=paletted[1:],
                             duration=frame_ms, loop=0, optimize=False)
    if sheet_path is not None:
        oh, ow = geom.output_shape
        fw, fh = frames[0].size
        thumb = max(0.25, min(1.0, 1600 / (ow * fw)))
        tw, th = max(1, int(fw * thumb)), max(1, int(fh * thumb))
        sheet = Image.new("RGB", (ow * tw, oh * th), "white")
        for i, frame in enumerate(frames):
            sheet.paste(frame.resize((tw, th), Image.Resampling.LANCZOS),
                        ((i % ow) * tw, (i // ow) * th))
        with atomic_path(sheet_path) as tmp:
            sheet.save(tmp, format="PNG")
    return len(frames)
