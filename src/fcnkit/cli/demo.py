"""``fcnkit demo``: synthetic data → train an FCN-8s on the CPU → evaluate → pictures.

The whole demo goes through the library the other commands use:
``fcnkit.data.generate_synthetic_dataset``, ``fcnkit.engine.train.train`` (the loop behind
``fcnkit train``), ``fcnkit.engine.checkpoint.model_from_checkpoint``,
``fcnkit.viz.confusion.plot_confusion_matrix`` and ``fcnkit.engine.predict.predict_paths``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from fcnkit.cli._common import format_table, print_json

# Recipes: chosen by measurement on a 2-core CPU (docs/workflow.md records the numbers).
# FCN-8s on a ResNet-18 trained from scratch (no pretrained weights exist offline).
RECIPES: dict[str, dict[str, Any]] = {
    "full": {
        "dataset": {"train": 800, "val": 200, "seed": 0, "size": (150, 210)},
        "train": {"epochs": 8, "batch_size": 8, "lr": 0.02, "crop": (128, 128),
                  "scale_range": (0.75, 1.25), "color_jitter": True},
    },
    "quick": {
        "dataset": {"train": 240, "val": 60, "seed": 0, "size": (150, 210)},
        "train": {"epochs": 3, "batch_size": 8, "lr": 0.02, "crop": (128, 128),
                  "scale_range": (0.75, 1.25), "color_jitter": True},
    },
}
NUM_PREDICTIONS = 4


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train and evaluate an FCN-8s on the embedded synthetic dataset (CPU)",
        description=(
            "Generate the synthetic dataset in a cache directory (once), train an FCN-8s "
            "(ResNet-18 backbone, from scratch) on the CPU, evaluate it and write a run "
            "directory: best.pt/last.pt, metrics.json, curves.png, confusion.png and "
            "prediction overlays. --quick gives a first look in about a minute."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="tiny run (about a minute)")
    parser.add_argument("--out", help="run directory (default runs/demo or runs/demo-quick)")
    parser.add_argument(
        "--cache", help="dataset cache (default $FCNKIT_CACHE or ~/.cache/fcnkit)"
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--workers", type=int, default=0,
                        help="data loader workers (default 0: the images are small)")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: all cores; use 1 on a busy machine)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=run)


def cache_dir(option: str | None) -> Path:
    """``--cache``, else ``$FCNKIT_CACHE``, else ``~/.cache/fcnkit``."""
    if option:
        return Path(option).expanduser()
    env = os.environ.get("FCNKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fcnkit"


def ensure_dataset(cache: Path, spec: dict[str, Any]) -> tuple[Path, bool]:
    """The synthetic dataset for ``spec`` under ``cache``; generated when absent.

    Returns (directory, generated_now). A directory whose ``synthetic.json`` does not match
    ``spec`` (another version or an interrupted run) is regenerated.
    """
    from fcnkit.data import generate_synthetic_dataset
    from fcnkit.data.synthetic import GENERATOR_VERSION

    h, w = spec["size"]
    root = cache / f"synthetic-s{spec['seed']}-{spec['train']}-{spec['val']}-{h}x{w}"
    manifest = root / "synthetic.json"
    if manifest.is_file():
        try:
            stored = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            stored = {}
        same = all(stored.get(k) == (list(v) if isinstance(v, tuple) else v)
                   for k, v in spec.items())
        if same and stored.get("version") == GENERATOR_VERSION:
            return root, False
    generate_synthetic_dataset(root, train=spec["train"], val=spec["val"], seed=spec["seed"],
                               size=tuple(spec["size"]))
    return root, True


def run(args: argparse.Namespace) -> int:
    from fcnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from fcnkit.engine.config import TrainConfig
    from fcnkit.engine.predict import predict_paths
    from fcnkit.engine.train import train
    from fcnkit.viz.confusion import plot_confusion_matrix

    recipe = RECIPES["quick" if args.quick else "full"]
    out = Path(args.out).expanduser() if args.out else Path(
        "runs/demo-quick" if args.quick else "runs/demo")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; choose a directory")
    data_dir, generated = ensure_dataset(cache_dir(args.cache), recipe["dataset"])
    if not args.json:
        print(f"fcnkit demo: dataset {data_dir} ({'generated' if generated else 'cached'})",
              flush=True)
    config = TrainConfig(
        data=f"voc:{data_dir}", model="fcn8s", backbone="resnet18", out=str(out),
        seed=args.seed, workers=args.workers, device="cpu", progress=not args.no_progress,
        log_every=5,
        **{**recipe["train"], **({"threads": args.threads} if args.threads else {})},
    )
    result = train(config)

    best = load_checkpoint(result["best"])
    metrics = best["metrics"]
    classes = list(best["classes"])
    plot_confusion_matrix(metrics["confusion"], classes, out / "confusion.png")
    model = model_from_checkpoint(best)
    val_ids = (data_dir / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    inputs = [data_dir / "JPEGImages" / f"{i}.jpg" for i in val_ids[:NUM_PREDICTIONS]]
    written = predict_paths(model, inputs, out / "predictions", palette=best["palette"],
                            overlay=True, num_classes=len(classes))
    summary = {
        "miou": metrics.get("miou"), "pixel_acc": metrics.get("pixel_acc"),
        "mean_acc": metrics.get("mean_acc"), "fwiou": metrics.get("fwiou"),
        "iou": dict(zip(classes, metrics.get("iou", []))),
        "best_epoch": int(best["epoch"]), "epochs": config.epochs,
        "train_time_s": round(result["time_s"], 1),
        "num_val_images": len(val_ids), "dataset": str(data_dir), "run_dir": str(out),
        "files": {
            "best": result["best"], "last": result["last"],
            "metrics": str(out / "metrics.json"), "curves": str(out / "curves.png"),
            "confusion": str(out / "confusion.png"),
            "predictions": [str(p) for p in written],
        },
    }
    from fcnkit.atomic import write_text_atomic

    write_text_atomic(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
    if args.json:
        print_json(summary)
        return 0
    rows = [[name, value] for name, value in summary["iou"].items()]
    print(format_table(rows, ["class", "IoU"]))
    print()
    print(format_table(
        [[k, summary[k]] for k in ("miou", "pixel_acc", "mean_acc", "fwiou")]
        + [["best_epoch", f"{summary['best_epoch']}/{summary['epochs']}"],
           ["train_time_s", summary["train_time_s"]]],
        ["metric", "value"],
    ))
    print(f"\nrun directory {out}: best.pt, last.pt, metrics.json, metrics.jsonl, curves.png, "
          f"confusion.png, predictions/ ({len(written)} files)")
    print(f"next: fcnkit eval --checkpoint {result['best']} --data voc:{data_dir}")
    return 0
