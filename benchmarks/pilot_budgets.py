"""Budget pilot of the training claims: FCN-8s's val mIoU against wall time and epochs.

A claim's budget is chosen by a pilot on *another* dataset seed and training seed than the
claim's own (:data:`fcnkit.reproduce.skips.PILOT_DATA_SEED`, ``PILOT_SEED``), against the
criterion written in the claim's code before it runs
(:data:`fcnkit.reproduce.skips.CRITERION_MIOU` val mIoU within
:data:`fcnkit.reproduce.skips.CRITERION_SECONDS` s of training). This script trains FCN-8s
with the claims' recipe (:data:`fcnkit.reproduce.runner.RECIPE`, the full budget's crop and
batch) on a generated task, prints one line per epoch (cumulative training seconds, val
mIoU) and whether, and at which epoch, the criterion is met.

Run (the recorded pilots use the defaults; minutes on 2 cores)::

    python benchmarks/pilot_budgets.py --task limbs --threads 2 --json
    python benchmarks/pilot_budgets.py --train 8 --val 4 --epochs 1 --size 64,64   # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from fcnkit.data.cache import ensure_dataset
from fcnkit.reproduce import gridding, padding, skips
from fcnkit.reproduce.runner import FULL, ReproduceConfig, variant_config
from fcnkit.training.loop import train
from fcnkit.training.runlog import read_run_log


def criterion_met(epochs: list[dict], miou: float, seconds: float) -> dict:
    """The first epoch whose val mIoU reaches ``miou`` within ``seconds`` of cumulative
    training time, or ``{"met": False}``."""
    for record in epochs:
        if record["miou"] is not None and record["miou"] >= miou \
                and record["time_s"] <= seconds:
            return {"met": True, "epoch": record["epoch"], "time_s": record["time_s"],
                    "miou": record["miou"]}
    return {"met": False}


#: claim -> (base budget, criterion (val mIoU, training seconds), model settings of the
#: piloted network: the claim's most expensive or reference variant)
CLAIMS = {
    "skips": (FULL, (skips.CRITERION_MIOU, skips.CRITERION_SECONDS),
              {"model": "fcn8s"}),
    "gridding": (gridding.GRID_FULL,
                 (gridding.CRITERION_MIOU, gridding.CRITERION_SECONDS),
                 {"model": "context_module", "backbone": None,
                  "model_options": {"front": 2, "dilations": gridding.SCHEDULES["hdc"],
                                    "channels": gridding.CHANNELS}}),
    "padding": (padding.FULL, (padding.CRITERION_MIOU, padding.CRITERION_SECONDS),
                {"model": "fcn8s", "backbone": "vgg16", "upsample": padding.UPSAMPLE,
                 "model_options": {"faithful": False, **padding.MODEL_OPTIONS}}),
}


def pilot(task: str, train_images: int, val_images: int, size: tuple[int, int], epochs: int,
          threads: int | None, out: Path, claim: str = "skips", faithful: bool = False,
          crop: tuple[int, int] | None = None) -> dict:
    base, (criterion_miou, criterion_seconds), settings = CLAIMS[claim]
    if claim == "padding":
        settings = {**settings, "model_options": {**settings["model_options"],
                                                  "faithful": faithful}}
    crop = crop or base.crop
    budget = dataclasses.replace(base, train=train_images, val=val_images, size=size,
                                 epochs=epochs,
                                 crop=(min(crop[0], size[0]), min(crop[1], size[1])))
    spec = {"train": train_images, "val": val_images, "seed": skips.PILOT_DATA_SEED,
            "size": size, "task": task}
    root, _ = ensure_dataset(spec, out / "data")
    config = ReproduceConfig(out=str(out), threads=threads, budget=budget)
    run_dir = out / "fcn8s"
    train(variant_config(config, budget, f"synth:{root}", run_dir, seed=skips.PILOT_SEED,
                         **settings))
    records = [r for r in read_run_log(run_dir / "metrics.jsonl") if r.get("kind") == "epoch"]
    curve, elapsed = [], 0.0
    for r in records:
        elapsed += float(r.get("time_s", 0.0))
        curve.append({"epoch": int(r["epoch"]), "time_s": round(elapsed, 1),
                      "miou": None if r.get("miou") is None else float(r["miou"])})
    return {"claim": claim, "settings": settings, "task": task,
            "dataset_seed": skips.PILOT_DATA_SEED, "seed": skips.PILOT_SEED,
            "train": train_images, "val": val_images, "size": list(size), "epochs": epochs,
            "threads": threads, "budget": dataclasses.asdict(budget), "curve": curve,
            "criterion": {"miou": criterion_miou, "seconds": criterion_seconds,
                          **criterion_met(curve, criterion_miou, criterion_seconds)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claim", choices=tuple(CLAIMS), default="skips",
                        help="whose network, budget and criterion (default skips: FCN-8s; "
                             "upsampling shares them)")
    parser.add_argument("--task", help="synthetic task (default: the claim's own)")
    parser.add_argument("--train", type=int, help="train images (default: the claim's)")
    parser.add_argument("--val", type=int, help="val images (default: the claim's)")
    parser.add_argument("--size", help="H,W (default: the claim's)")
    parser.add_argument("--crop", help="H,W training crop (default: the claim's)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the claim's)")
    parser.add_argument("--faithful", action="store_true",
                        help="padding: pilot the faithful (100-px pad) geometry")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--out", help="keep the dataset and run here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    base = CLAIMS[args.claim][0]
    size = tuple(int(v) for v in args.size.split(",")) if args.size else base.size
    crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
    task = args.task or {"skips": skips.TASK, "gridding": gridding.default_task(),
                         "padding": padding.TASK}[args.claim]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        results = pilot(task, args.train or base.train, args.val or base.val, size,
                        args.epochs or base.epochs, args.threads, out, args.claim,
                        args.faithful, crop)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"pilot: {args.claim}'s network on {task} (dataset seed "
          f"{results['dataset_seed']}, training seed {results['seed']}), "
          f"{results['train']} train / {results['val']} val at {size[0]}x{size[1]}")
    print(f"{'epoch':>5s} {'train s':>8s} {'val mIoU':>9s}")
    for r in results["curve"]:
        miou = "n/a" if r["miou"] is None else f"{r['miou']:.3f}"
        print(f"{r['epoch']:5d} {r['time_s']:8.1f} {miou:>9s}")
    c = results["criterion"]
    verdict = (f"met at epoch {c['epoch']} ({c['time_s']} s, mIoU {c['miou']:.3f})"
               if c["met"] else "not met")
    print(f"criterion: val mIoU >= {c['miou']} "
          f"within {c['seconds']} s: {verdict}")


if __name__ == "__main__":
    main()
