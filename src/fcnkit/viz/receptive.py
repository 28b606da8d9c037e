"""Receptive-field growth plot: RF size and effective stride layer by layer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, cast

from fcnkit.errors import InputError
from fcnkit.viz import pyplot, save_figure

__all__ = ["plot_receptive_field_growth"]


def _first(value: Any) -> float | None:
    """First spatial dimension of a per-dimension value, as a float (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        value = value[0]
    return float(value)


def plot_receptive_field_growth(
    records: Sequence[Any], path: str | os.PathLike[str], title: str | None = None
) -> None:
    """Plot receptive-field size (log scale) and effective stride along a network.

    Args:
        records: layer records with ``name``, ``size``, ``stride``, ``whole_input``,
            ``input_size`` and ``field`` (as returned by
            :func:`fcnkit.analysis.receptive_field_of`). The first spatial dimension (height)
            is plotted.
        path: PNG file to write (atomically).
        title: figure title (default: none).

    Layers whose output depends on the whole input (global pooling) are drawn as red
    crosses at the input size; the dashed line is the input size.
    """
    if not records:
        raise InputError("plot_receptive_field_growth: no layer records to plot")
    plt = pyplot()
    xs = list(range(1, len(records) + 1))
    local = [_first(r.field.size) if r.field is not None else None for r in records]
    strides = [_first(r.stride) for r in records]
    input_h = _first(records[0].input_size)
    width = min(16.0, max(6.0, 0.28 * len(records) + 3))
    fig, ax = plt.subplots(figsize=(width, 4.2))
    ax.plot([x for x, v in zip(xs, local) if v is not None], [v for v in local if v is not None],
            "o-", color="tab:blue", markersize=4, label="receptive field (pixels)")
    whole = [x for x, r in zip(xs, records) if r.whole_input]
    if whole:
        ax.plot(whole, [input_h] * len(whole), "x", color="tab:red", markersize=8,
                label="depends on the whole input")
    ax.axhline(input_h, color="gray", linestyle="--", linewidth=1,
               label=f"input size ({int(cast(float, input_h))} px)")
    ax.set_yscale("log", base=2)
    ax.set_ylabel("receptive field size (px, log2)")
    ax.set_xlabel("layer")
    ax2 = ax.twinx()
    ax2.step([x for x, s in zip(xs, strides) if s is not None],
             [s for s in strides if s is not None], where="mid", color="tab:orange",
             linewidth=1.5, label="effective stride")
    ax2.set_yscale("log", base=2)
    ax2.set_ylabel("effective stride (px, log2)", color="tab:orange")
    step = max(1, len(records) // 40)
    ax.set_xticks(xs[::step])
    ax.set_xticklabels([r.name for r in records][::step], rotation=75, fontsize=7,
                       ha="right")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
