"""Figures of the training claims: the same val images predicted by every variant, with a
zoom on the most boundary-dense window (where skip fusion should show)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fcnkit.data import open_dataset
from fcnkit.data.palette import colorize, overlay
from fcnkit.data.pixels import to_uint8
from fcnkit.data.transforms import denormalize, eval_transform
from fcnkit.metrics import trimap_band
from fcnkit.viz import pyplot, save_figure


def _zoom_window(mask: np.ndarray, side: int) -> tuple[slice, slice]:
    """The side×side window holding the most label changes (ties: the first)."""
    band = trimap_band(torch.as_tensor(mask.astype(np.int64))[None], 1)[0].numpy()
    h, w = band.shape
    side = min(side, h, w)
    # Window sums from the integral image (summed-area table).
    table = np.pad(band.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (table[side:, side:] - table[:-side, side:] - table[side:, :-side]
            + table[:-side, :-side])
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return slice(y, y + side), slice(x, x + side)


def prediction_grid(
    models: Mapping[str, Any], data: str, path: str | os.PathLike[str], *,
    images: int = 3, zoom: int = 40,
) -> None:
    """Rows: val images; columns: image, ground truth, each model's overlay, then the same
    columns zoomed on the most boundary-dense ``zoom``-pixel window."""
    dataset = open_dataset(data, "val", transform=eval_transform())
    count = min(images, len(dataset))
    names = ["image", "truth", *models]
    plt = pyplot()
    fig, axes = plt.subplots(count, 2 * len(names), figsize=(2.0 * 2 * len(names), 2.0 * count),
                             squeeze=False)
    for row in range(count):
        image, mask = dataset[row]
        rgb = to_uint8(denormalize(image).permute(1, 2, 0))
        panels = [rgb, np.asarray(colorize(mask.numpy()).convert("RGB"))]
        with torch.no_grad():
            for model in models.values():
                pred = model(image[None]).argmax(1)[0].numpy()
                # Every class coloured, the background too (the model predicts no void).
                panels.append(np.asarray(overlay(rgb, pred, alpha=0.55, background=None)))
        ys, xs = _zoom_window(mask.numpy(), zoom)
        for col, panel in enumerate(panels + [p[ys, xs] for p in panels]):
            ax = axes[row, col]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                label = names[col % len(names)]
                ax.set_title(label if col < len(names) else f"{label} (zoom)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
