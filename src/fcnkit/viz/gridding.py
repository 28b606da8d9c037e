"""Heat map of a dilated stack's coverage: how many paths reach each input pixel."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.ticker import MaxNLocator

from fcnkit.errors import InputError
from fcnkit.viz import pyplot, save_figure

__all__ = ["plot_dilation_coverage"]


def plot_dilation_coverage(
    coverage: np.ndarray,
    path: str | os.PathLike[str],
    title: str | None = None,
    annotate_max_side: int = 31,
) -> None:
    """Draw a path-count map (:func:`fcnkit.arith.dilation_coverage`) as a heat map.

    Args:
        coverage: 2-D non-negative integer array; 0 = hole.
        path: PNG file to write (atomically).
        title: figure title.
        annotate_max_side: write the count in every cell when the map is at most this many
            cells on a side (otherwise the cells are too small to read).

    Holes are drawn black, covered pixels on a white-to-red scale of path counts, with a
    thin grid between cells.
    """
    cov = np.asarray(coverage)
    if cov.ndim != 2 or cov.size == 0:
        raise InputError(f"coverage must be a non-empty 2-D array, got shape {cov.shape}")
    plt = pyplot()

    h, w = cov.shape
    side = min(12.0, max(4.0, 0.32 * max(h, w) + 1.5))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    cmap = LinearSegmentedColormap.from_list(
        "paths", ["#fff5eb", "#fd8d3c", "#7f2704"]
    ).with_extremes(bad="black")
    masked = np.ma.masked_equal(cov, 0)
    vmax = max(int(cov.max()), 1)
    image = ax.imshow(masked, cmap=cmap, vmin=1, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="paths (black = hole)",
                 ticks=MaxNLocator(integer=True))
    if max(h, w) <= 60:
        ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
        ax.grid(which="minor", color="#888888", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
    centre = ((h - 1) / 2, (w - 1) / 2)
    ax.set_xticks([0, centre[1], w - 1])
    ax.set_xticklabels([f"{-(w - 1) // 2}", "0", f"{(w - 1) // 2}"])
    ax.set_yticks([0, centre[0], h - 1])
    ax.set_yticklabels([f"{-(h - 1) // 2}", "0", f"{(h - 1) // 2}"])
    ax.set_xlabel("input offset from the output pixel (px)")
    if max(h, w) <= annotate_max_side:
        fontsize = max(4.0, min(9.0, 160.0 / max(h, w)))
        for (y, x), value in np.ndenumerate(cov):
            if value:
                colour = "white" if value > 0.6 * vmax else "black"
                ax.text(x, y, str(int(value)), ha="center", va="center", fontsize=fontsize,
                        color=colour)
    if title:
        ax.set_title(title)
    save_figure(fig, path)
