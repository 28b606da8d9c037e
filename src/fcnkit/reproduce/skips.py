"""Claim ``skips``: fusing shallow, fine "where" features with deep, coarse "what"
features refines the output (Long et al. 2015, §4.2 and Table 2).

The paper's Table 2 scores FCN-32s / 16s / 8s at 59.4 / 62.4 / 62.7 mean IU on the
736-image seg11valid subset of PASCAL VOC 2011 val (footnote 7: the images that do not
intersect SBD's training set). Its main points, restated clause by clause at that
strength:

* FCN-16s beats FCN-32s on mIoU (+3.0 in the paper);
* FCN-8s is *not worse* than FCN-16s on mIoU: the paper calls its +0.3 gain "minor", so
  the clause is non-inferiority, not superiority;
* the output gets finer: FCN-8s > FCN-16s > FCN-32s on Boundary IoU, and on thin-part IoU
  (:class:`fcnkit.metrics.ThinPartIoU`: the IU on limb pixels of the part mask) when the
  dataset writes a part mask (otherwise those clauses are skipped, with the reason).

The task is ``limbs`` unless ``--task``/``--data`` say otherwise (issue 20, part 3): the
class is readable only from a body's stripe orientation (a large receptive field), the
3–10 px limbs only from local edges, with no border cuts, occlusion or void band, and a
part mask for thin-part IoU. ``--task objects`` runs the same protocol on the older task.

The models share the backbone (ResNet-18 from scratch, at the width of
:data:`fcnkit.reproduce.runner.RECIPE`), the data, the budget and the seeds; they differ
only in the FCN head. On ResNet the fused maps are not exactly aligned
(``model.misalignment``: −8 and −12 px at the skips, 15.5 px at the output,
docs/models.md), a confound the paper's VGG16 nets do not have. The **alignment control**
``fcn8s-aligned`` is FCN-8s with ``exact_align=True``: the fractional offsets
:func:`fcnkit.arith.skip_fusion_crops` computes are resampled away
(:func:`fcnkit.models.heads.fractional_shift`), so its fused maps and output are exactly
aligned; its clause says whether FCN-8s's boundary gain over FCN-16s survives alignment.

Budget-selection criterion, written before any claim runs: the full budget is the
smallest in which FCN-8s reaches :data:`CRITERION_MIOU` val mIoU on the limbs task in a
pilot on dataset seed :data:`PILOT_DATA_SEED` and training seed :data:`PILOT_SEED` (never
the claim's seeds), within :data:`CRITERION_SECONDS` s of training on 2 cores
(``benchmarks/pilot_budgets.py`` measures and checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fcnkit.reproduce.figures import prediction_grid
from fcnkit.reproduce.runner import (
    ReproduceConfig,
    budget_for,
    by_variant,
    claim_seeds,
    dataset_for,
    fmt,
    judge,
    load_run_model,
    markdown_table,
    mean_time,
    part_mask_root,
    run_record,
    seed_plan,
    train_variants,
    write_outputs,
)
from fcnkit.reproduce.stats import Clause

CLAIM = "Skips refine the output: FCN-16s beats FCN-32s in mIoU, FCN-8s is not worse " \
        "than FCN-16s in mIoU, and FCN-8s > FCN-16s > FCN-32s at the boundaries and on " \
        "thin parts, also with exactly aligned skips (same backbone, data, budget and " \
        "seeds)."
# variant -> (model, model options); fcn8s-aligned is the alignment control.
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "fcn32s": ("fcn32s", {}),
    "fcn16s": ("fcn16s", {}),
    "fcn8s": ("fcn8s", {}),
    "fcn8s-aligned": ("fcn8s", {"exact_align": True}),
}
VARIANTS = tuple(MODELS)
KEYS = ("miou", "trimap_miou", "boundary_iou", "thin_part_iou", "pixel_acc")
#: The synthetic task the claim generates unless --task or --data is given.
TASK = "limbs"

# Budget-selection criterion (see the module docstring), declared before any run.
CRITERION_MIOU = 0.75
CRITERION_SECONDS = 90.0
PILOT_DATA_SEED = 7
PILOT_SEED = 100

# Thresholds, declared before any run.
# 0.02 mIoU: two thirds of the paper's FCN-32s -> 16s step (3.0 points); a smaller gain
# would not be the effect Table 2 reports.
MIOU_DELTA_MIN = 0.02
# 0.02 mIoU: "minor" (+0.3 in the paper) means FCN-8s may gain little; a loss counts
# when it reaches the smallest difference every training claim counts as real (the
# equivalence margins of upsampling and padding are the same 0.02). Set before any run
# on limbs; an earlier draft had 0.01, which 5 seeds cannot bound when the paired sd
# exceeds 0.0105 (t(0.95, 4) = 2.13).
MIOU_MARGIN = 0.02
# 0.01 Boundary IoU: Boundary IoU (d = 3 px band) runs at about half of mIoU on these
# tasks, so half of MIOU_DELTA_MIN is the same relative step.
BOUNDARY_DELTA_MIN = 0.01
# 0.01 thin-part IoU: limbs are 3-10 px wide, so a finer output moves a large share of
# their pixels; the same absolute step as Boundary IoU is the least that counts.
THIN_PART_DELTA_MIN = 0.01
# 0.10 mIoU above the best constant prediction: the least that counts as having learned
# the task (on limbs, 4 classes, one class segmented at IoU 0.4 beyond the constant).
GATE_MARGIN = 0.10

# Seeds, declared before the run they set (the second full design on limbs). The first
# full run (5 seeds of every variant, docs/results/earlier/skips-5-seeds.json) decided
# five clauses; its power line said the two thin-part clauses need 15 and 18 paired seeds
# at the spread it measured (sd 0.021 and 0.023; half-widths 0.021 and 0.023 against
# 0.01). So FCN-32s, 16s and 8s train 18 seeds, the number that power line named, and the
# alignment control keeps 5 (its clause had half-width 0.005 against 0.01 at 5 seeds).
# What makes 3 x 18 + 5 = 59 trainings fit the 20-minute budget is running two 1-thread
# trainings at once (ReproduceConfig.jobs): 1.8x the throughput of one 2-thread training
# on 2 cores.
FULL_SEEDS = 18
CONTROL_SEEDS = 5
#: The variant trained on at most :data:`CONTROL_SEEDS` seeds.
CONTROL = "fcn8s-aligned"

_PAPER = "Long et al. 2015, Table 2"
CLAUSES = (
    Clause("FCN-16s beats FCN-32s on mIoU", "superiority", "fcn16s", "fcn32s", "miou",
           delta_min=MIOU_DELTA_MIN, source=f"{_PAPER} (59.4 -> 62.4)"),
    Clause("FCN-8s is not worse than FCN-16s on mIoU", "non_inferiority", "fcn8s", "fcn16s",
           "miou", margin=MIOU_MARGIN, source=f"{_PAPER} (62.4 -> 62.7, 'minor')"),
    Clause("FCN-8s beats FCN-16s on Boundary IoU", "superiority", "fcn8s", "fcn16s",
           "boundary_iou", delta_min=BOUNDARY_DELTA_MIN,
           source="Long et al. 2015, §4.2 and Fig. 4 (finer detail)"),
    Clause("FCN-16s beats FCN-32s on Boundary IoU", "superiority", "fcn16s", "fcn32s",
           "boundary_iou", delta_min=BOUNDARY_DELTA_MIN,
           source="Long et al. 2015, §4.2 and Fig. 4 (finer detail)"),
    Clause("aligned FCN-8s beats FCN-16s on Boundary IoU (alignment control)",
           "superiority", "fcn8s-aligned", "fcn16s", "boundary_iou",
           delta_min=BOUNDARY_DELTA_MIN,
           source="issue 20: the ResNet misalignment (8, 12 px; 15.5 px at the output) "
                  "is a confound the paper's VGG16 nets do not have"),
)
THIN_PART_CLAUSES = (
    Clause("FCN-8s beats FCN-16s on thin-part IoU", "superiority", "fcn8s", "fcn16s",
           "thin_part_iou", delta_min=THIN_PART_DELTA_MIN,
           source="Long et al. 2015, §4.2 and Fig. 4 (finer detail)"),
    Clause("FCN-16s beats FCN-32s on thin-part IoU", "superiority", "fcn16s", "fcn32s",
           "thin_part_iou", delta_min=THIN_PART_DELTA_MIN,
           source="Long et al. 2015, §4.2 and Fig. 4 (finer detail)"),
)
THIN_PART_SKIPPED = [
    {"clause": clause.clause,
     "reason": "the dataset writes no part mask (only --task limbs does), and thin-part "
               "IoU needs one"} for clause in THIN_PART_CLAUSES
]


def seed_list(config: ReproduceConfig) -> list[int]:
    """The seeds of FCN-32s, 16s and 8s: ``--seeds``, else 2 quick, else
    :data:`FULL_SEEDS`."""
    return claim_seeds(config, FULL_SEEDS)


def seeds_by_variant(config: ReproduceConfig) -> list[tuple[int, str]]:
    """``(seed, variant)`` in training order, seed by seed: every variant on
    :func:`seed_list`, except :data:`CONTROL` on its first :data:`CONTROL_SEEDS`."""
    return seed_plan(seed_list(config), VARIANTS, {CONTROL: CONTROL_SEEDS})


def run(config: ReproduceConfig) -> dict[str, Any]:
    out = Path(config.out)
    budget = budget_for(config)
    data = dataset_for(config, budget, TASK)
    planned = [(variant, out / "runs" / f"{variant}-seed{seed}",
                {"model": model, "seed": seed, "model_options": options})
               for seed, variant in seeds_by_variant(config)
               for model, options in [MODELS[variant]]]
    trained = train_variants(config, budget, data, [(d, v) for _, d, v in planned])
    runs = [run_record(variant, result, KEYS)
            for (variant, _, _), result in zip(planned, trained)]
    parts = part_mask_root(data) is not None
    results = judge("skips", CLAIM, config, budget, data, runs,
                    CLAUSES + (THIN_PART_CLAUSES if parts else ()), GATE_MARGIN,
                    () if parts else THIN_PART_SKIPPED)
    seeds = seed_list(config)
    results["config"].update(seeds=seeds, control_seeds=seeds[:CONTROL_SEEDS])
    summary = by_variant(runs, VARIANTS, KEYS)
    figure = out / "skips_predictions.png"
    first = seed_list(config)[0]
    prediction_grid({v: load_run_model(out / "runs" / f"{v}-seed{first}") for v in VARIANTS},
                    data, figure)
    results.update(summary=summary, figures={"predictions": str(figure)})
    table = markdown_table(
        ["model", "mIoU", f"trimap mIoU (d={config.boundary_width})", "Boundary IoU",
         "thin-part IoU", "pixel acc", "train s / seed"],
        [[v, fmt(summary[v]["miou"]), fmt(summary[v]["trimap_miou"]),
          fmt(summary[v]["boundary_iou"]), fmt(summary[v]["thin_part_iou"]),
          fmt(summary[v]["pixel_acc"]),
          mean_time(runs, v)] for v in VARIANTS])
    write_outputs(out, results, table)
    results["table"] = table
    return results

