"""Pilot: does a larger val split lower the seed-to-seed spread of thin-part IoU deltas?

``skips``' two thin-part clauses (FCN-8s > 16s, 16s > 32s, delta_min 0.01) lacked the
power to decide at 5 seeds (one-sided half-widths 0.021 and 0.023; docs/reproductions.md).
The val split is the same for every seed, but each trained network errs on its own few
limbs, so part of the spread of its score on 200 images is item-level noise that a larger
split averages out; the rest is the networks' true seed-to-seed variation, which no split
removes. This pilot measures which part dominates, before any design change is run:

FCN-16s and FCN-8s, trained with ``skips``' full budget (800 train / 200 val at 96×128,
6 epochs) on the pilot dataset seed (:data:`fcnkit.reproduce.skips.PILOT_DATA_SEED`, not
the claim's) with pilot training seeds ``PILOT_SEED + i``, each ``last.pt`` scored for
thin-part IoU on the val split of 200 images and on a val split of ``--val`` images of
the same dataset seed (its first 200 images are the same ones). It prints the deltas,
their sd and one-sided half-widths, and the seeds each split would need
(:func:`fcnkit.reproduce.stats.seeds_needed`).

Run (about 10 minutes on 2 cores)::

    python benchmarks/pilot_thin_spread.py --seeds 5 --val 1000 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from fcnkit.data.cache import ensure_dataset
from fcnkit.reproduce import skips
from fcnkit.reproduce.runner import FULL, ReproduceConfig, thin_part_iou, variant_config
from fcnkit.reproduce.stats import one_sided_bounds, seeds_needed
from fcnkit.training.loop import train


def spread(deltas: list[float], threshold: float) -> dict[str, float | int | None]:
    """Mean, sd, one-sided 95 % half-width and the seeds that would reach ``threshold``."""
    bounds = one_sided_bounds(deltas)
    assert bounds["upper"] is not None and bounds["mean"] is not None
    return {"mean": bounds["mean"], "sd": bounds["sd"],
            "half_width": float(bounds["upper"]) - float(bounds["mean"]),
            "seeds_needed": seeds_needed(bounds["sd"], threshold)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--val", type=int, default=1000, help="the larger val split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="working directory (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="pilot-thin-"))
    budget = FULL
    base = {"train": budget.train, "seed": skips.PILOT_DATA_SEED, "size": budget.size,
            "task": skips.TASK}
    small, _ = ensure_dataset({**base, "val": budget.val}, out / "data")
    large, _ = ensure_dataset({**base, "val": args.val}, out / "data")
    config = ReproduceConfig(out=str(out), threads=args.threads, budget=budget)
    scores: dict[str, dict[str, list[float]]] = {}
    for i in range(args.seeds):
        seed = skips.PILOT_SEED + i
        for variant in ("fcn16s", "fcn8s"):
            model, options = skips.MODELS[variant]
            run_dir = out / "runs" / f"{variant}-seed{seed}"
            last = train(variant_config(config, dataclasses.replace(budget), f"synth:{small}",
                                        run_dir, model=model, seed=seed,
                                        model_options=options))["last"]
            for name, root in (("val200", small), (f"val{args.val}", large)):
                scores.setdefault(name, {}).setdefault(variant, []).append(
                    thin_part_iou(last, f"synth:{root}"))
    threshold = skips.THIN_PART_DELTA_MIN
    result = {"seeds": [skips.PILOT_SEED + i for i in range(args.seeds)],
              "dataset_seed": skips.PILOT_DATA_SEED, "scores": scores,
              "fcn8s_minus_fcn16s": {
                  name: {"deltas": [a - b for a, b in zip(v["fcn8s"], v["fcn16s"])],
                         **spread([a - b for a, b in zip(v["fcn8s"], v["fcn16s"])], threshold)}
                  for name, v in scores.items()}}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for name, r in result["fcn8s_minus_fcn16s"].items():
        print(f"{name}: deltas {[round(d, 3) for d in r['deltas']]}, sd {r['sd']:.4f}, "
              f"half-width {r['half_width']:.4f}, seeds needed {r['seeds_needed']}")


if __name__ == "__main__":
    main()
