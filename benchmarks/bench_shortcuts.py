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

Both classifiers are fcnkit's own (:mod:`fcnkit.inference.baselines`: torch L-BFGS on the
objective of scikit-learn's default ``LogisticRegression``, standardised features), trained
on ``--pixels-per-image`` uniformly drawn non-void pixels of every train image; the same fit
by scikit-learn (``--sklearn``, when it is installed) is reported next to it as a check,
and the two val mIoUs agree within :data:`SKLEARN_TOLERANCE`
(tests/inference/test_baselines.py).
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

from fcnkit.data import open_dataset
from fcnkit.data.regions import CHROMA_AXES
from fcnkit.data.synthetic import TASKS, generate_synthetic_dataset
from fcnkit.inference.baselines import (
    FEATURES,
    classifier_baseline,
    constant_baseline,
    load_split,
    sample_pixels,
)
from fcnkit.metrics import ConfusionMatrix

WINDOWS = (1, 3, 5, 9, 15, 21)
#: |val mIoU (fcnkit) − val mIoU (scikit-learn)| allowed: both minimise the same convex
#: objective, so they differ only by where each solver stops (and the val pixels whose
#: class scores are that close to a tie).
SKLEARN_TOLERANCE = 0.01


def _rounded(scores: dict) -> dict:
    return {**scores, "miou": round(scores["miou"], 4),
            "pixel_acc": round(scores["pixel_acc"], 4),
            "iou": [None if v is None else round(v, 3) for v in scores["iou"]]}


def sklearn_baseline(train, val, num_classes: int, features, pixels: int, seed: int) -> dict:
    """The same fit by scikit-learn's ``StandardScaler`` + ``LogisticRegression()``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(*sample_pixels(train, features, pixels, seed))
    cm = ConfusionMatrix(num_classes)
    for image, mask in val:
        f = features(image)
        pred = model.predict(f.reshape(-1, f.shape[-1])).reshape(mask.shape)
        cm.update(pred.astype(np.int64), mask)
    s = cm.compute()
    return {"miou": float(s["miou"]), "pixel_acc": float(s["pixel_acc"]),
            "iou": [None if np.isnan(v) else float(v) for v in s["iou"]]}


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
        out: str | None, sklearn: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(out) if out else Path(tmp) / task
        start = time.perf_counter()
        generate_synthetic_dataset(root, train=train, val=val, seed=seed, size=size, task=task)
        spec = f"synth:{root}"
        classes = list(open_dataset(spec, "val").classes)
        train_set, val_set = load_split(spec, "train"), load_split(spec, "val")
        results = {"task": task, "train": train, "val": val, "size": list(size),
                   "dataset_seed": seed, "pixels_per_image": pixels, "classes": classes,
                   "generate_seconds": round(time.perf_counter() - start, 1),
                   "constant": _rounded(constant_baseline(val_set, len(classes)))}
        for name, features in FEATURES.items():
            start = time.perf_counter()
            results[name] = _rounded(classifier_baseline(
                train_set, val_set, len(classes), features, pixels=pixels, seed=seed))
            results[name]["seconds"] = round(time.perf_counter() - start, 1)
            if sklearn:
                start = time.perf_counter()
                check = _rounded(sklearn_baseline(train_set, val_set, len(classes), features,
                                                  pixels, seed))
                check["seconds"] = round(time.perf_counter() - start, 1)
                check["agrees"] = abs(check["miou"] - results[name]["miou"]) \
                    <= SKLEARN_TOLERANCE
                results[f"{name}_sklearn"] = check
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
    parser.add_argument("--sklearn", action="store_true",
                        help="also fit each classifier with scikit-learn (a check)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split(","))
    results = run(args.task, args.train, args.val, (h, w), args.seed, args.pixels_per_image,
                  args.out, args.sklearn)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"task {args.task}: {args.train} train / {args.val} val images at {h}x{w}, "
          f"seed {args.seed}, {args.pixels_per_image} train pixels per image; val mIoU")
    print(f"{'baseline':22s} {'mIoU':>6s} {'pix acc':>8s}  per-class IoU")
    for name in ("constant", *FEATURES, *(f"{n}_sklearn" for n in FEATURES
                                          if f"{n}_sklearn" in results)):
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
