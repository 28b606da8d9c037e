"""Claim ``skips``: FCN-8s > FCN-16s > FCN-32s (Long et al. 2015, §4.2 and Table 2:
fusing shallow, fine "where" features with deep, coarse "what" features refines the
boundaries; on PASCAL VOC 2011 val the paper reports mIoU 59.4 / 62.4 / 62.7).

The three models share the backbone (ResNet-18 from scratch, at the width of
:data:`fcnkit.reproduce.runner.RECIPE`), the data, the budget and the seeds; they differ
only in the skips of the FCN head. Scores: mIoU and, where the
claim is about boundaries, trimap mIoU and Boundary IoU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fcnkit.reproduce.runner import (
    ReproduceConfig,
    budget_for,
    dataset_for,
    describe,
    fmt,
    markdown_table,
    near_chance,
    summarise,
    train_variant,
    write_outputs,
)

CLAIM = "FCN-8s > FCN-16s > FCN-32s in mIoU and at the boundaries (same backbone, data, " \
        "budget and seeds)."
VARIANTS = ("fcn32s", "fcn16s", "fcn8s")
KEYS = ("miou", "trimap_miou", "boundary_iou", "pixel_acc")


def ordered(summary: dict[str, dict[str, Any]], key: str) -> str:
    """'yes' if the means are strictly ordered 8s > 16s > 32s and every gap exceeds the
    larger of the two standard deviations; 'means only' if only the means are ordered."""
    means = [summary[v][key]["mean"] for v in VARIANTS]
    stds = [summary[v][key]["std"] for v in VARIANTS]
    if not (means[0] < means[1] < means[2]):
        return "no"
    gaps_clear = all(means[i + 1] - means[i] > max(stds[i], stds[i + 1]) for i in range(2))
    return "yes" if gaps_clear else "means only"


def verdict_from(order: dict[str, str]) -> tuple[str, str]:
    if all(v == "yes" for v in order.values()):
        return "reproduced", "8s > 16s > 32s on every score, gaps larger than the seed spread"
    if all(v == "no" for v in order.values()):
        return "not reproduced", "the means are not ordered 8s > 16s > 32s on any score"
    return "inconclusive", "ordering per score: " + ", ".join(f"{k}: {v}"
                                                               for k, v in order.items())


def run(config: ReproduceConfig) -> dict[str, Any]:
    from fcnkit.reproduce.figures import prediction_grid
    from fcnkit.reproduce.runner import load_run_model

    out = Path(config.out)
    budget = budget_for(config)
    data = dataset_for(config, budget)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for seed in config.seed_list():
        for variant in VARIANTS:
            runs[variant].append(train_variant(config, budget, data,
                                               out / "runs" / f"{variant}-seed{seed}",
                                               model=variant, seed=seed))
    summary = {v: summarise(runs[v], KEYS) for v in VARIANTS}
    order = {key: ordered(summary, key) for key in ("miou", "trimap_miou", "boundary_iou")}
    verdict, reason = verdict_from(order)
    if (untrained := near_chance(summary, data)) is not None:
        verdict, reason = "inconclusive", untrained
    figure = out / "skips_predictions.png"
    prediction_grid({v: load_run_model(out / "runs" / f"{v}-seed0") for v in VARIANTS},
                    data, figure)
    results = {"claim": "skips", "claim_text": CLAIM, "config": describe(config, budget),
               "data": data, "runs": runs, "summary": summary, "ordered": order,
               "figures": {"predictions": str(figure)}, "verdict": verdict,
               "verdict_reason": reason}
    table = markdown_table(
        ["model", "mIoU", f"trimap mIoU (d={config.boundary_width})", "Boundary IoU",
         "pixel acc", "train s / seed"],
        [[v, fmt(summary[v]["miou"]), fmt(summary[v]["trimap_miou"]),
          fmt(summary[v]["boundary_iou"]), fmt(summary[v]["pixel_acc"]),
          round(sum(r["time_s"] for r in runs[v]) / len(runs[v]))] for v in VARIANTS])
    write_outputs(out, results, table)
    results["table"] = table
    return results
