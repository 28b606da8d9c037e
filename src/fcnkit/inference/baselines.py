"""Shortcut baselines: what a pixel classifier without context scores on a dataset.

A segmentation score means little without them. Three baselines, scored like a model
(val mIoU, FCN definition, :class:`fcnkit.metrics.ConfusionMatrix`, void pixels left out):

* ``constant``: the best single class predicted everywhere (chosen on the val split, so
  an upper bound of what a constant prediction gets);
* ``colour``: multinomial logistic regression on the pixel's RGB (3 features);
* ``patch5``: multinomial logistic regression on the 5×5 RGB patch around the pixel
  (75 features, edge-replicated at the image border).

The classifier (:func:`fit_logistic`) is plain torch, so a user's install needs nothing
more: features standardised on the training pixels, then the L2-regularised multinomial
cross-entropy that scikit-learn's ``LogisticRegression()`` minimises by default
(``C = 1``: ``C·Σ_i loss_i + ½‖W‖²``, bias not penalised), minimised full-batch by L-BFGS
in float64. Only the classes present among the training pixels can be predicted (as in
scikit-learn). Training pixels are drawn uniformly among the non-void pixels of every train
image with a fixed seed (:func:`sample_pixels`). ``benchmarks/bench_shortcuts.py`` checks
the scores against scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from fcnkit.constants import IGNORE_INDEX
from fcnkit.data import open_dataset
from fcnkit.metrics import ConfusionMatrix

__all__ = [
    "FEATURES",
    "LogisticModel",
    "PATCH",
    "classifier_baseline",
    "colour_features",
    "constant_baseline",
    "fit_logistic",
    "load_split",
    "patch_features",
    "pixel_baselines",
    "sample_pixels",
]

#: Side of the patch classifier's window.
PATCH = 5

Pair = tuple[np.ndarray, np.ndarray]


def colour_features(image: np.ndarray) -> np.ndarray:
    """(H, W, 3): the pixel's RGB."""
    return image


def patch_features(image: np.ndarray, size: int = PATCH) -> np.ndarray:
    """(H, W, 3·size²): the size × size × 3 patch centred on each pixel (edge-replicated
    border), flattened in the order (channel, dy, dx)."""
    half = size // 2
    padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(0, 1))
    return windows.reshape(image.shape[0], image.shape[1], -1)


FEATURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "colour": colour_features, "patch5": patch_features}


def load_split(spec: str, split: str) -> list[Pair]:
    """(H, W, 3) float32 images and (H, W) int64 masks of a dataset split
    (:func:`fcnkit.data.open_dataset`, no transform)."""
    dataset = open_dataset(spec, split)
    return [(np.asarray(image).transpose(1, 2, 0).astype(np.float32),
             np.asarray(mask).astype(np.int64))
            for image, mask in (dataset[i] for i in range(len(dataset)))]


def sample_pixels(pairs: Sequence[Pair], features: Callable[[np.ndarray], np.ndarray],
                  pixels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of ``pixels`` non-void pixels per image, drawn without
    replacement (all of them when fewer) by ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for image, mask in pairs:
        f = features(image)
        f = f.reshape(-1, f.shape[-1])
        valid = np.flatnonzero(mask.reshape(-1) != IGNORE_INDEX)
        pick = rng.choice(valid, size=min(pixels, valid.size), replace=False)
        xs.append(f[pick])
        ys.append(mask.reshape(-1)[pick])
    return np.concatenate(xs), np.concatenate(ys)


class LogisticModel:
    """A fitted multinomial logistic regression (see :func:`fit_logistic`)."""

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor, classes: torch.Tensor) -> None:
        self.mean, self.scale = mean, scale
        self.weight, self.bias, self.classes = weight, bias, classes

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class index (int64) of every row of ``x`` (N, F)."""
        z = (torch.as_tensor(x, dtype=torch.float64) - self.mean) / self.scale
        best = (z @ self.weight.T + self.bias).argmax(1)
        return self.classes[best].numpy()


def fit_logistic(x: np.ndarray, y: np.ndarray, *, c: float = 1.0,
                 max_iter: int = 500) -> LogisticModel:
    """Multinomial logistic regression on standardised features, by full-batch L-BFGS.

    Minimises ``c·Σ_i CE(W z_i + b, y_i) + ½‖W‖²`` (scikit-learn's ``LogisticRegression``
    objective with ``C = c``), divided by N for the optimiser's scale. Features are
    standardised as ``StandardScaler`` does (population sd; a constant feature keeps
    scale 1). Deterministic: the start is zero and L-BFGS draws nothing at random.

    Args:
        x: (N, F) features.
        y: (N,) integer labels; only the classes present can be predicted.
        c: inverse regularisation strength.
        max_iter: L-BFGS iterations.
    """
    features = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    labels = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    classes, target = torch.unique(labels, return_inverse=True)
    mean = features.mean(0)
    scale = features.std(0, unbiased=False)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    z = (features - mean) / scale
    n, k = z.shape[0], classes.numel()
    weight = torch.zeros(k, z.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter,
                                  tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ weight.T + bias, target,
                                                 reduction="sum")
        loss = (c * loss + 0.5 * (weight ** 2).sum()) / n
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return LogisticModel(mean, scale, weight.detach(), bias.detach(), classes)


def _scores(matrix: ConfusionMatrix) -> dict[str, Any]:
    s = matrix.compute()
    return {"miou": float(s["miou"]), "pixel_acc": float(s["pixel_acc"]),
            "iou": [None if np.isnan(v) else float(v) for v in s["iou"]]}


def constant_baseline(val: Sequence[Pair], num_classes: int) -> dict[str, Any]:
    """The best single class predicted on every val pixel, by val mIoU."""
    best: dict[str, Any] | None = None
    for label in range(num_classes):
        matrix = ConfusionMatrix(num_classes)
        for _, mask in val:
            matrix.update(np.full(mask.shape, label, dtype=np.int64), mask)
        scores = {**_scores(matrix), "class": label}
        if best is None or scores["miou"] > best["miou"]:
            best = scores
    assert best is not None
    return best


def classifier_baseline(train: Sequence[Pair], val: Sequence[Pair], num_classes: int,
                        features: Callable[[np.ndarray], np.ndarray], *, pixels: int,
                        seed: int) -> dict[str, Any]:
    """Val scores of :func:`fit_logistic` on ``features`` of ``pixels`` train pixels per
    image (:func:`sample_pixels`)."""
    model = fit_logistic(*sample_pixels(train, features, pixels, seed))
    matrix = ConfusionMatrix(num_classes)
    for image, mask in val:
        f = features(image)
        matrix.update(model.predict(f.reshape(-1, f.shape[-1])).reshape(mask.shape), mask)
    return _scores(matrix)


def pixel_baselines(spec: str, *, pixels: int = 200, seed: int = 0) -> dict[str, Any]:
    """``{"constant", "colour", "patch5"}`` val scores of the three baselines on a dataset
    (``spec`` as for :func:`fcnkit.data.open_dataset`), trained on its train split.

    Args:
        pixels: train pixels drawn per image (the demo's 200 keep the fit to seconds).
        seed: the pixel sampling seed.
    """
    num_classes = len(open_dataset(spec, "val").classes)
    train, val = load_split(spec, "train"), load_split(spec, "val")
    out: dict[str, Any] = {"constant": constant_baseline(val, num_classes),
                           "pixels_per_image": pixels, "seed": seed}
    for name, features in FEATURES.items():
        out[name] = classifier_baseline(train, val, num_classes, features, pixels=pixels,
                                        seed=seed)
    return out
