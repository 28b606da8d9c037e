"""Shortcut baselines of the synthetic tasks: what a pixel classifier gets without context.

A task built to test an architecture must not be solvable from one pixel or a small
window. For ``--task objects|shapes|limbs|regions`` this script writes a small dataset with
``generate_synthetic_dataset`` and reports the validation mIoU (FCN definition, every
non-void val pixel, :class:`fcnkit.metrics.ConfusionMatrix`) of

* ``constant``: the best single class predicted everywhere (chosen on the val split, so
  an upper bound of what a constant prediction gets);
* ``colour``: multinomial logistic regression on the pixel's RGB (3 features);
* ``patch5``: multinomial logistic regression on the 5×5 RGB patch around the pixel
  (75 features, edge-replicated at the image border).

Both classifiers are scikit-learn's ``LogisticRegression`` on standardised features,
trained on ``--pixels-per-image`` uniformly drawn non-void pixels of every train image.
For ``regions`` it also prints the nearest-class-mean accuracy of the chroma averaged over
w × w windows lying inside one cell (w = 1, 3, 5, 9, 15, 21), the averaging the class
needs.

Run (numbers recorded in docs/datasets.md; about a minute per task on 2 cores)::

    python benchmarks/bench_shortcuts.py --task limbs --train 60 --val 20 --size 96,128
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fcnkit.data import open_dataset
from fcnkit.data.regions import CHROMA_AXES
from fcnkit.data.synthetic import TASKS, generate_synthetic_dataset
from fcnkit.metrics import ConfusionMatrix

IGNORE = 255
PATCH = 5
WINDOWS = (1, 3, 5, 9, 15, 21)


def _load(spec: str, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(H, W, 3) float images in [0, 1] and (H, W) int64 masks of a split."""
    dataset = open_dataset(spec, split)
    return [(np.asarray(image).transpose(1, 2, 0).astype(np.float32), np.asarray(mask))
            for image, mask in (dataset[i] for i in range(len(dataset)))]


def colour_features(image: np.ndarray) -> np.ndarray:
    """(H, W, 3): the pixel's RGB."""
    return image


def patch_features(image: np.ndarray) -> np.ndarray:
    """(H, W, 75): the 5×5×3 patch centred on each pixel (edge-replicated border)."""
    half = PATCH // 2
    padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (PATCH, PATCH), axis=(0, 1))
    return windows.reshape(image.shape[0], image.shape[1], -1)


FEATURES = {"colour": colour_features, "patch5": patch_features}


def _scores(cm: ConfusionMatrix) -> dict:
    s = cm.compute()
    return {"miou": round(float(s["miou"]), 4), "pixel_acc": round(float(s["pixel_acc"]), 4),
            "iou": [None if np.isnan(v) else round(float(v), 3) for v in s["iou"]]}


def constant_baseline(val, num_classes: int) -> dict:
    """The best single class predicted on every pixel, by val mIoU."""
    best = None
    for c in range(num_classes):
        cm = ConfusionMatrix(num_classes)
        for _, mask in val:
            cm.update(np.full(mask.shape, c, dtype=np.int64), mask)
        scores = {**_scores(cm), "class": c}
        if best is None or scores["miou"] > best["miou"]:
            best = scores
    return best


def classifier_baseline(train, val, num_classes: int, features, pixels: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for image, mask in train:
        f = features(image).reshape(-1, features(image[:1, :1]).shape[-1])
        valid = np.flatnonzero(mask.reshape(-1) != IGNORE)
        pick = rng.choice(valid, size=min(pixels, valid.size), replace=False)
        xs.append(f[pick])
        ys.append(mask.reshape(-1)[pick])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(np.concatenate(xs), np.concatenate(ys))
    cm = ConfusionMatrix(num_classes)
    for image, mask in val:
        f = features(image)
        pred = model.predict(f.reshape(-1, f.shape[-1])).reshape(mask.shape)
        cm.update(pred.astype(np.int64), mask)
    return _scores(cm)


def window_curve(train, val, num_classes: int) -> dict:
    """Nearest-class-mean accuracy of the w × w mean chroma, on val pixels whose window
    lies inside one cell; class means from single train pixels."""
    def chroma(image):
        return image.astype(np.float64) @ CHROMA_AXES.T

    f = np.concatenate([chroma(i).reshape(-1, 2) for i, _ in train])
    y = np.concatenate([m.reshape(-1) for _, m in train])
    means = np.stack([f[y == k].mean(axis=0) for k in range(num_classes)])
    curve = {}
    for w in WINDOWS:
        right = total = 0
        for image, mask in val:
            inside = ndimage.maximum_filter(mask, size=w) == ndimage.minimum_filter(mask, size=w)
            mean = ndimage.uniform_filter(chroma(image), size=(w, w, 1))[inside]
            pred = np.argmin(((mean[:, None] - means[None]) ** 2).sum(-1), axis=1)
            right += int((pred == mask[inside]).sum())
            total += int(inside.sum())
        curve[str(w)] = round(right / total, 3)
    return curve


def run(task: str, train: int, val: int, size: tuple[int, int], seed: int, pixels: int,
        out: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(out) if out else Path(tmp) / task
        start = time.perf_counter()
        generate_synthetic_dataset(root, train=train, val=val, seed=seed, size=size, task=task)
        spec = f"synth:{root}"
        classes = list(open_dataset(spec, "val").classes)
        train_set, val_set = _load(spec, "train"), _load(spec, "val")
        results = {"task": task, "train": train, "val": val, "size": list(size),
                   "dataset_seed": seed, "pixels_per_image": pixels, "classes": classes,
                   "generate_seconds": round(time.perf_counter() - start, 1),
                   "constant": constant_baseline(val_set, len(classes))}
        for name, features in FEATURES.items():
            start = time.perf_counter()
            results[name] = classifier_baseline(train_set, val_set, len(classes), features,
                                                pixels, seed)
            results[name]["seconds"] = round(time.perf_counter() - start, 1)
        if task == "regions":
            results["window_accuracy"] = window_curve(train_set, val_set, len(classes))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--train", type=int, default=60, help="train images (default 60)")
    parser.add_argument("--val", type=int, default=20, help="val images (default 20)")
    parser.add_argument("--size", default="96,128", help="H,W (default 96,128)")
    parser.add_argument("--seed", type=int, default=0, help="dataset and sampling seed")
    parser.add_argument("--pixels-per-image", type=int, default=2000,
                        help="train pixels drawn per image (default 2000)")
    parser.add_argument("--out", help="keep the generated dataset here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split(","))
    results = run(args.task, args.train, args.val, (h, w), args.seed, args.pixels_per_image,
                  args.out)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"task {args.task}: {args.train} train / {args.val} val images at {h}x{w}, "
          f"seed {args.seed}, {args.pixels_per_image} train pixels per image; val mIoU")
    print(f"{'baseline':22s} {'mIoU':>6s} {'pix acc':>8s}  per-class IoU")
    for name in ("constant", *FEATURES):
        r = results[name]
        ious = " ".join(f"{c}={'-' if v is None else f'{v:.2f}'}"
                        for c, v in zip(results["classes"], r["iou"]))
        label = f"{name}({results['classes'][r['class']]})" if name == "constant" else name
        print(f"{label:22s} {r['miou']:6.3f} {r['pixel_acc']:8.3f}  {ious}")
    if "window_accuracy" in results:
        print("nearest-class-mean accuracy of the window-mean chroma (window inside a cell): "
              + ", ".join(f"{k}px {v:.3f}" for k, v in results["window_accuracy"].items()))


if __name__ == "__main__":
    main()
