"""Shortcut baselines of a synthetic task: how far do colour and local texture go?

A segmentation task that rewards architecture must not be solvable pixel by pixel. This
script trains two per-pixel classifiers on a dataset written by ``fcnkit data synth`` and
reports their validation mIoU (FCN metrics over every non-void val pixel,
:class:`fcnkit.metrics.ConfusionMatrix`):

* ``colour``: the pixel's RGB plus its Gaussian-smoothed RGB (σ = 1 and 3 px);
* ``patch5``: the raw 5×5×3 patch around the pixel (colour + local texture, 75 values).

Both use scikit-learn's ``HistGradientBoostingClassifier`` (100 iterations; a non-linear
model, so that a low score is the features' limit, not the classifier's). Train pixels are
a uniform random sample of the non-void pixels of the first ``--train-images`` train
images.

Run (numbers recorded in docs/datasets.md)::

    fcnkit data synth --task shapes --out data/shapes
    python benchmarks/shapes_baselines.py synth:data/shapes
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier

from fcnkit.data import open_dataset
from fcnkit.metrics import ConfusionMatrix

IGNORE = 255
PATCH = 5


def _image_mask(sample) -> tuple[np.ndarray, np.ndarray]:
    image, mask = sample
    return np.asarray(image).transpose(1, 2, 0).astype(np.float32), np.asarray(mask)


def colour_features(image: np.ndarray) -> np.ndarray:
    """(H, W, 9): RGB and its Gaussian blur at σ = 1 and 3 px."""
    blurred = [ndimage.gaussian_filter(image, sigma=(s, s, 0)) for s in (1.0, 3.0)]
    return np.concatenate([image, *blurred], axis=2)


def patch_features(image: np.ndarray) -> np.ndarray:
    """(H, W, 75): the 5×5×3 patch centred on each pixel (edge-replicated border)."""
    half = PATCH // 2
    padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (PATCH, PATCH), axis=(0, 1))
    return windows.reshape(image.shape[0], image.shape[1], -1)


FEATURES = {"colour": colour_features, "patch5": patch_features}


def run(spec: str, train_images: int, pixels_per_image: int, val_images: int,
        seed: int, iterations: int = 100) -> dict:
    train_set, val_set = open_dataset(spec, "train"), open_dataset(spec, "val")
    num_classes = len(train_set.classes)
    rng = np.random.default_rng(seed)
    results = {"data": spec, "train_images": train_images, "pixels_per_image": pixels_per_image,
               "iterations": iterations,
               "val_images": min(val_images, len(val_set)), "classes": list(train_set.classes)}
    for name, features in FEATURES.items():
        start = time.perf_counter()
        xs, ys = [], []
        for i in range(min(train_images, len(train_set))):
            image, mask = _image_mask(train_set[i])
            f = features(image)
            valid = np.flatnonzero(mask.reshape(-1) != IGNORE)
            pick = rng.choice(valid, size=min(pixels_per_image, valid.size), replace=False)
            xs.append(f.reshape(-1, f.shape[-1])[pick])
            ys.append(mask.reshape(-1)[pick])
        model = HistGradientBoostingClassifier(max_iter=iterations, random_state=seed)
        model.fit(np.concatenate(xs), np.concatenate(ys))
        cm = ConfusionMatrix(num_classes)
        for i in range(results["val_images"]):
            image, mask = _image_mask(val_set[i])
            f = features(image)
            pred = model.predict(f.reshape(-1, f.shape[-1])).reshape(mask.shape)
            cm.update(pred.astype(np.int64), mask.astype(np.int64))
        scores = cm.compute()
        results[name] = {"miou": scores["miou"], "pixel_acc": scores["pixel_acc"],
                         "iou": scores["iou"], "seconds": round(time.perf_counter() - start, 1)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="dataset spec, e.g. synth:data/shapes")
    parser.add_argument("--train-images", type=int, default=200)
    parser.add_argument("--pixels-per-image", type=int, default=400)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=100,
                        help="boosting iterations (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.data, args.train_images, args.pixels_per_image, args.val_images,
                  args.seed, args.iterations)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.data}: {args.train_images} train images x {args.pixels_per_image} px, "
          f"{results['val_images']} val images")
    for name in FEATURES:
        r = results[name]
        ious = " ".join(f"{c}={v:.2f}" for c, v in zip(results["classes"], r["iou"]))
        print(f"{name:7s} mIoU {r['miou']:.3f}  pixel acc {r['pixel_acc']:.3f}  "
              f"({r['seconds']} s)  {ious}")


if __name__ == "__main__":
    main()
