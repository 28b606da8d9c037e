"""Confusion-matrix heat map (rows = true class, columns = predicted class)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from fcnkit.errors import InputError
from fcnkit.viz import pyplot, save_figure


def plot_confusion_matrix(
    matrix: Any,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    normalize: bool = True,
    *,
    title: str | None = None,
) -> None:
    """Write a heat map of a confusion matrix to ``path`` (PNG), atomically.

    Args:
        matrix: (K, K) pixel counts, ``matrix[i, j]`` = pixels of true class ``i``
            predicted as ``j`` (numpy array or torch tensor, e.g. ``ConfusionMatrix.matrix``).
        classes: K class names (axis labels).
        path: output picture file.
        normalize: divide each row by its total, so cell (i, j) is the fraction of class
            ``i``'s pixels predicted as ``j`` (the diagonal is per-class accuracy); rows
            of classes absent from the ground truth stay 0.
        title: figure title (default: "Confusion matrix" and whether it is normalised).
    """
    counts = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix,
                        dtype=np.float64)
    k = counts.shape[0] if counts.ndim == 2 else -1
    if counts.ndim != 2 or counts.shape[1] != k:
        raise InputError(f"confusion matrix must be square (K, K), got shape {counts.shape}")
    if len(classes) != k:
        raise InputError(f"got {len(classes)} class names for a {k}x{k} confusion matrix")
    if normalize:
        rows = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    else:
        values = counts
    plt = pyplot()
    side = max(4.0, 0.45 * k + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="fraction of the true class" if normalize else "pixels")
    ax.set_xticks(range(k), labels=list(classes), rotation=60, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(k), labels=list(classes))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or ("Confusion matrix (rows normalised)" if normalize
                           else "Confusion matrix (pixels)"))
    if k <= 25:  # cell values stay readable up to about 25 classes
        top = values.max() if values.size else 0.0
        for i in range(k):
            for j in range(k):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(values[i, j])}"
                colour = "white" if top > 0 and values[i, j] > 0.6 * top else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    save_figure(fig, path)
