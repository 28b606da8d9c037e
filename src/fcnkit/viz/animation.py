"""Animations of convolution arithmetic in the style of Dumoulin & Visin's conv_arithmetic.

A frame per output position: the (padded, possibly zero-inserted) input grid with the
kernel footprint on it, and the output grid filling in. The geometry -- which cell is
padding, input or an inserted zero, and which cells every kernel tap reads -- is
:func:`fcnkit.arith.taps.tap_layout`'s (a transposed convolution is drawn as its
equivalent direct convolution, as the conv_arithmetic figures show it); this module only
draws it. :func:`write_conv_animation` renders with matplotlib (Agg) and writes a GIF with
Pillow (and optionally a PNG contact sheet of every frame), atomically and
deterministically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.patches import Rectangle
from PIL import Image

from fcnkit.arith.taps import INPUT, INSERTED_ZERO, PADDING, TapLayout
from fcnkit.atomic import atomic_path
from fcnkit.errors import InputError
from fcnkit.limits import MAX_ANIMATION_FRAMES
from fcnkit.viz import pyplot

__all__ = ["MAX_FRAMES", "write_conv_animation"]

# One frame per output position; more than this is no longer a picture one can follow
# (fcnkit.limits, shared with the explorer).
MAX_FRAMES = MAX_ANIMATION_FRAMES


_COLOURS = {
    PADDING: "#ffffff",
    INPUT: "#6baed6",
    INSERTED_ZERO: "#e5e5e5",
}
_TAP = {PADDING: "#8c8fb3", INPUT: "#08306b", INSERTED_ZERO: "#6e7191"}
_FOOTPRINT = "#c6dbef"
_OUT_EMPTY, _OUT_DONE, _OUT_NOW = "#ffffff", "#41ab5d", "#00441b"


def _render_frames(geom: TapLayout, dpi: int = 80) -> list[np.ndarray]:
    plt = pyplot()

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
        style: dict[str, Any] = (
            {"linestyle": "--", "edgecolor": "#999999"} if kind == PADDING
            else {"linestyle": "-", "edgecolor": "#4d4d4d"})
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
    geom: TapLayout,
    gif_path: str | os.PathLike[str] | None,
    sheet_path: str | os.PathLike[str] | None = None,
    frame_ms: int = 500,
) -> int:
    """Render ``geom`` and write a GIF (one frame per output position) and/or a contact sheet.

    Args:
        geom: from :func:`fcnkit.arith.taps.tap_layout`.
        gif_path: GIF file to write, or None.
        sheet_path: PNG contact sheet (all frames tiled like the output grid), or None.
        frame_ms: frame duration in milliseconds.

    Returns:
        The number of frames. Files are written atomically and are byte-for-byte
        reproducible for the same arguments.

    Raises:
        InputError: with no path, or more than ``MAX_FRAMES`` output positions.
    """
    if gif_path is None and sheet_path is None:
        raise InputError("nothing to write: give a GIF path and/or a contact-sheet path")
    oh, ow = geom.output_shape
    if geom.positions > MAX_FRAMES:
        raise InputError(f"{oh}x{ow} output positions is more than {MAX_FRAMES} frames; use "
                         "a smaller input size")
    frames = [Image.fromarray(f) for f in _render_frames(geom)]
    if gif_path is not None:
        paletted = [f.convert("P", palette=Image.Palette.ADAPTIVE, colors=64) for f in frames]
        with atomic_path(gif_path) as tmp:
            paletted[0].save(tmp, format="GIF", save_all=True, append_images=paletted[1:],
                             duration=frame_ms, loop=0, optimize=False)
    if sheet_path is not None:
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
