"""Claim ``gridding``: stacked dilations with a common factor grid; HDC's schedule does not.

Wang et al. (2018), "Understanding Convolution for Semantic Segmentation" (HDC): a stack
of dilated convolutions whose rates share a factor (2, 2, 4, 4) samples its input on a
lattice with holes (the gridding effect), seen as checkerboard artefacts; a schedule with a
dense first rate and no common factor (1, 2, 4, 5; the same receptive field, 25 cells)
covers every cell and segments better.

**The experiment** (:class:`fcnkit.models.context.ContextNet`): a k×k stride-2 front end,
then four dilated 3×3 convolutions with rates ``none`` 1,1,1,1 / ``common-factor``
2,2,4,4 / ``hdc`` 1,2,4,5, then a 1×1 classifier; k = 2, 4, 6. The stack's holes are cells
of the stride-2 feature lattice; whether they are also image pixels depends on the front
end: the common-factor stack reads cells 2 apart (4 px), which a front end of k ≥ 4 px
fills and one of k = 2 does not. :func:`image_coverage_1d` counts it exactly (1-D path
counts in image pixels, front end included): the common-factor stack leaves 24 of the 50
image pixels of its span (per axis) unseen at k = 2 and none at k = 4 or 6; HDC and the
undilated stack leave none.

**Scores**, on label interiors only (pixels ≥ :data:`INTERIOR_DISTANCE` px from a pixel of
another label or void, :func:`interior_mask`), so that what is measured is the artefact,
not the receptive field's size at label edges:

* ``interior_miou``: mIoU over interior pixels;
* ``checkerboard``: the parity sub-lattice disagreement, the fraction of pairs of
  neighbouring interior cells of the stride-2 score lattice (they lie on different parity
  sub-lattices) whose predicted classes differ (:func:`neighbour_disagreement`). The true
  label is constant over an interior, so every disagreement there is an artefact.

**Clauses**, each a paired comparison over seeds:

* at k = 2, HDC beats the common-factor schedule on interior mIoU (superiority);
* at k = 2, the common-factor schedule has more checkerboard disagreement than HDC;
* dose-response, the prediction of the mechanism: the HDC advantage (interior mIoU, HDC
  minus common-factor, per seed) shrinks from k = 2 to k = 6 (superiority of the k = 2
  advantage over the k = 6 one; derived runs ``HDC advantage k=K``).

The task is a parameter (``config.extra["task"]``: ``objects``, ``shapes`` or, once
:mod:`fcnkit.data.synthetic` offers it, ``regions``, the default then: noisy regions whose
class needs averaging over ≥ 15 px); ``--data`` overrides it.

**Where the dilated ResNet-18 FCN grids** (:func:`resnet_gridding_support`, reported in
every run, no training): its dilated stack (layer3 and layer4, rates 2 and 4) runs on
layer2's stride-8 features, whose receptive field is already 99 px. The gradient support
of one stack output (layer4) with respect to layer2's features has holes — cells of the
stride-8 feature lattice (:data:`HOLES_UNIT`), exactly the analytic coverage map's — and
the one of a logit has none (the head's 3×3 convolution fills them); with respect to the
input, neither has a hole: every image pixel is seen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from torch import nn

from fcnkit.arith import dilation_coverage
from fcnkit.arith.gridding import dilation_coverage_1d
from fcnkit.data.synthetic import TASKS
from fcnkit.errors import InputError
from fcnkit.metrics import ConfusionMatrix
from fcnkit.models import build_model
from fcnkit.reproduce.receptive_fields import linearised
from fcnkit.reproduce.runner import (
    FULL,
    QUICK,
    ReproduceConfig,
    budget_for,
    by_variant,
    claim_seeds,
    class_names,
    dataset_for,
    fmt,
    judge,
    load_run_model,
    markdown_table,
    run_record,
    train_variants,
    val_loader,
    write_outputs,
)
from fcnkit.reproduce.stats import Clause
from fcnkit.viz import pyplot, save_figure

CLAIM = "A common-factor dilation schedule grids (holes in the image when the front end " \
        "is narrower than the lattice's gap, checkerboard predictions on label interiors) " \
        "and scores below HDC's schedule there; the HDC advantage shrinks as the front " \
        "end widens."
SCHEDULES = {"none": "1,1,1,1", "common-factor": "2,2,4,4", "hdc": "1,2,4,5"}
#: Front-end kernels of the dose-response sweep.
FRONTS = (2, 4, 6)
#: Channels of the context module (front end and stack).
CHANNELS = 32


def variant(schedule: str, front: int) -> str:
    """The runs' variant name of a schedule at front end k."""
    return f"{schedule} k={front}"


def advantage_variant(front: int) -> str:
    """The derived runs' variant of the HDC advantage at front end k."""
    return f"HDC advantage k={front}"


VARIANTS = tuple(variant(s, k) for k in FRONTS for s in SCHEDULES)
DERIVED = tuple(advantage_variant(k) for k in FRONTS)
KEYS = ("miou", "trimap_miou", "boundary_iou", "interior_miou", "checkerboard")
#: Pixels at least this far (Euclidean) from a pixel of another label are interior.
INTERIOR_DISTANCE = 6
# The context module has no backbone: the shared recipe's optimizer and learning rate,
# without its backbone width.
# Budget-selection criterion, written before any gridding claim runs: the full budget is
# one in which the HDC k=2 context module reaches CRITERION_MIOU val mIoU on the regions
# task within CRITERION_SECONDS s of training on 2 cores, in a pilot on dataset seed
# skips.PILOT_DATA_SEED and training seed skips.PILOT_SEED (benchmarks/pilot_budgets.py
# --claim gridding). 0.5 is well above the 5x5-patch shortcut (0.33, docs/datasets.md);
# 25 s keeps the 45 runs of a full run (9 variants, 5 seeds) inside 20 minutes.
CRITERION_MIOU = 0.5
CRITERION_SECONDS = 25.0
# The pilot (20 epochs of 800 images, docs/reproductions.md) met the criterion at epoch 1
# (0.743 in 7.4 s) and measured about 7 s per epoch of 800 images with validation; a full
# run's 45 runs inside 20 minutes leave about 25 s each with the interior scoring: 3
# epochs of 600 images.
GRID_QUICK = dataclasses.replace(QUICK, train=300, val=100, epochs=2, width=None)
GRID_FULL = dataclasses.replace(FULL, train=600, val=200, epochs=3, width=None)
#: Seeds of a full run when ``--seeds`` is not given (quick: runner.QUICK_SEEDS).
FULL_SEEDS = 5

# Thresholds, declared before any run.
# 0.02 mIoU: the smallest difference the training claims count as real (as skips).
MIOU_DELTA_MIN = 0.02
# 0.01: one more disagreeing pair in a hundred neighbouring interior cells; a lattice
# that splits the predictions must add at least that on top of what noise gives.
CHECKERBOARD_DELTA_MIN = 0.01
# 0.01 mIoU: half of MIOU_DELTA_MIN; the advantage must shrink by at least that much.
SHRINK_DELTA_MIN = 0.01
# 0.10 mIoU above the best constant prediction (as skips).
GATE_MARGIN = 0.10
#: What the ResNet-18 analysis's feature-lattice holes count.
HOLES_UNIT = "cells of the stride-8 feature lattice (layer2's output), not image pixels"
#: What the context module's analytic holes count.
CELL_UNIT = "cells of the stride-2 feature lattice (the front end's output)"

_HDC = "Wang et al. 2018, §3.2 (HDC)"
CLAUSES = (
    Clause("at k=2, HDC beats the common-factor schedule on interior mIoU", "superiority",
           variant("hdc", 2), variant("common-factor", 2), "interior_miou",
           delta_min=MIOU_DELTA_MIN, source=_HDC),
    Clause("at k=2, the common-factor schedule has more checkerboard disagreement on "
           "interiors than HDC", "superiority", variant("common-factor", 2),
           variant("hdc", 2), "checkerboard", delta_min=CHECKERBOARD_DELTA_MIN,
           source=f"{_HDC}: gridding artefacts"),
    Clause("the HDC advantage (interior mIoU) shrinks from k=2 to k=6", "superiority",
           advantage_variant(2), advantage_variant(6), "hdc_advantage",
           delta_min=SHRINK_DELTA_MIN,
           source="fcnkit's own question: the mechanism's prediction (a front end as wide "
                  "as the lattice's gap sees every pixel)"),
)


# Geometry -------------------------------------------------------------------------------

def image_coverage_1d(rates: Sequence[int], front: int) -> np.ndarray:
    """Path counts along one axis, in image pixels, of one output cell of a k×k stride-2
    front end followed by a dilated 3×3 stack: index i = input offset from the first pixel
    of the field (length ``front + 2·2·sum(rates)``), 0 = a pixel never seen.

    The stack's cell offsets (:func:`fcnkit.arith.dilation_coverage_1d`) are 2 px apart in
    the image; each cell sees the ``front`` pixels under its front-end kernel.
    """
    cells = dilation_coverage_1d(rates)
    spread = np.zeros(2 * (len(cells) - 1) + 1, dtype=np.int64)
    spread[::2] = cells
    return np.convolve(spread, np.ones(front, dtype=np.int64))


def coverage_report(rates: Sequence[int], front: int) -> dict[str, Any]:
    """Holes of a schedule: in cells of the stride-2 lattice (2-D analytic map of the
    stack) and in image pixels (the 1-D image coverage squared: the map is separable)."""
    cells = dilation_coverage(rates)
    pixels = image_coverage_1d(rates, front)
    return {"rates": list(rates), "front": front,
            "holes_cells": int((cells == 0).sum()), "cells_unit": CELL_UNIT,
            "cells_span": int(cells.shape[0]),
            "holes_pixels": int((np.outer(pixels, pixels) == 0).sum()),
            "pixels_span": int(pixels.size)}


# Interior scores ------------------------------------------------------------------------

def interior_mask(label: np.ndarray, distance: int = INTERIOR_DISTANCE,
                  void: int = 255) -> np.ndarray:
    """Pixels whose Euclidean distance to the nearest pixel of another value (void
    included) is at least ``distance``; void pixels are never interior. The image border
    is not a boundary."""
    label = np.asarray(label)
    out = np.zeros(label.shape, dtype=bool)
    for value in np.unique(label):
        if value == void:
            continue
        inside = label == value
        if inside.all():
            out |= inside
            continue
        out |= inside & (distance_transform_edt(inside) >= distance)
    return out


def interior_cells(interior: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Stride-2 cells (``shape``) whose 2×2 block of pixels (2i, 2i+1) is all interior;
    a block reaching past the image is not."""
    h, w = shape
    padded = np.zeros((2 * h, 2 * w), dtype=bool)
    ih, iw = min(2 * h, interior.shape[0]), min(2 * w, interior.shape[1])
    padded[:ih, :iw] = interior[:ih, :iw]
    return padded.reshape(h, 2, w, 2).all(axis=(1, 3))


def neighbour_disagreement(pred: np.ndarray, cells: np.ndarray) -> tuple[int, int]:
    """``(differ, pairs)``: pairs of 4-neighbouring cells both in ``cells`` and how many
    of them have different ``pred`` (a cell and its neighbour lie on different parity
    sub-lattices, so this is the parity sub-lattice disagreement)."""
    right = cells[:, :-1] & cells[:, 1:]
    down = cells[:-1, :] & cells[1:, :]
    differ = int(((pred[:, :-1] != pred[:, 1:]) & right).sum()
                 + ((pred[:-1, :] != pred[1:, :]) & down).sum())
    return differ, int(right.sum() + down.sum())


def interior_scores(model: Any, data: str, num_classes: int,
                    distance: int = INTERIOR_DISTANCE) -> dict[str, float]:
    """``interior_miou`` and ``checkerboard`` of a context module over the val split."""
    matrix = ConfusionMatrix(num_classes)
    differ = pairs = 0
    with torch.no_grad():
        for images, masks in val_loader(data):
            scores = model.coarse_scores(images)
            full = model(images)
            for i in range(images.shape[0]):
                label = masks[i].numpy()
                interior = interior_mask(label, distance)
                target = np.where(interior, label, 255)
                matrix.update(full[i].argmax(0), torch.as_tensor(target).long())
                cells = interior_cells(interior, tuple(scores.shape[-2:]))
                d, p = neighbour_disagreement(scores[i].argmax(0).numpy(), cells)
                differ, pairs = differ + d, pairs + p
    return {"interior_miou": float(matrix.compute()["miou"]),
            "checkerboard": differ / pairs if pairs else float("nan")}


def advantage_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Derived runs: per seed and front end, ``hdc_advantage`` = interior mIoU of HDC minus
    that of the common-factor schedule (the dose-response clause compares them)."""
    table = {(r["variant"], r["seed"]): r["metrics"].get("interior_miou") for r in runs}
    out = []
    for front in FRONTS:
        for seed in sorted({r["seed"] for r in runs}):
            a = table.get((variant("hdc", front), seed))
            b = table.get((variant("common-factor", front), seed))
            if a is not None and b is not None:
                out.append({"variant": advantage_variant(front), "seed": seed,
                            "derived": True, "metrics": {"hdc_advantage": a - b}})
    return out


# The dilated ResNet-18 FCN: where its gridding lives -------------------------------------

def per_convolution_rates(model: Any) -> list[int]:
    """The rate of every k×k (k > 1) convolution of the dilated residual blocks, read from
    the modules (a ResNet-18 basic block dilates both of its 3×3 convolutions)."""
    blocks = [block for name in ("layer1", "layer2", "layer3", "layer4")
              for block in getattr(model.backbone, name)]
    dilated = blocks[len(blocks) - len(model.dilations):]
    return [int(m.dilation[0]) for block in dilated for m in block.modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1]


def resnet_gridding_support(dilations: str = "2,2,4,4", width: float = 0.125,
                            ) -> dict[str, Any]:
    """Gradient supports of the dilated ResNet-18 FCN (output stride 8): of one layer4
    output cell (the dilated stack's) and of one logit, with respect to layer2's features
    and to the input, next to the analytic coverage maps of their convolutions' rates.

    The network is :func:`fcnkit.reproduce.receptive_fields.linearised` (ReLU and
    BatchNorm as identities, max pools as average pools, positive weights), so a cell's
    gradient is nonzero exactly where a path reaches it. Returns, per target (``stack``,
    ``logit``): the rates, the analytic holes (cells of the stride-8 lattice), the
    autograd support's holes in the same window, whether the two maps are equal, and the
    holes in image pixels inside the input support's bounding box.
    """
    model = build_model("fcn_dilated", num_classes=2, backbone="resnet18",
                        dilations=dilations, width=width).eval()
    stack_rates = per_convolution_rates(model)
    head_rates = [int(model.classifier.conv.dilation[0])]
    twin = linearised(model)
    span = sum(stack_rates) + sum(head_rates)
    # The logit's support (2·span + 1 cells on layer2's lattice) fits inside the stride-8
    # map, and its input support (that many cells of 8 px, plus layer2's 99-px field)
    # inside the image.
    side = 8 * (2 * span + 1) + 128
    results: dict[str, Any] = {"dilations": list(model.dilations), "width": width,
                               "input": [side, side], "holes_unit": HOLES_UNIT}

    def target(x: torch.Tensor, which: str) -> torch.Tensor:
        if which == "stack":
            feature = twin.backbone(x)[twin.backbone.deepest]
            return feature[0, :, feature.shape[-2] // 2, feature.shape[-1] // 2].sum()
        scores = twin.coarse_scores(x)
        return scores[0, 0, scores.shape[-2] // 2, scores.shape[-1] // 2]

    for which, rates in (("stack", stack_rates), ("logit", stack_rates + head_rates)):
        captured: list[torch.Tensor] = []

        def leaf(module: Any, inputs: Any, output: torch.Tensor,
                 captured: list[torch.Tensor] = captured) -> torch.Tensor:
            captured.append(output.detach().requires_grad_())
            return captured[-1]

        handle = twin.backbone.layer2.register_forward_hook(leaf)
        try:
            target(torch.ones(1, 3, side, side), which).backward()
        finally:
            handle.remove()
        feature_support = (captured[0].grad.abs().sum(dim=(0, 1)) > 0).numpy()
        x = torch.ones(1, 3, side, side, requires_grad=True)
        target(x, which).backward()
        pixels = (x.grad.abs().sum(dim=(0, 1)) > 0).numpy()
        coverage = dilation_coverage(rates) > 0
        radius = (coverage.shape[0] - 1) // 2
        cy, cx = feature_support.shape[0] // 2, feature_support.shape[1] // 2
        expected = np.zeros_like(feature_support)
        expected[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1] = coverage
        rows, cols = np.nonzero(pixels)
        box = pixels[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        results[which] = {
            "rates": rates, "analytic_holes": int((~coverage).sum()),
            "autograd_holes": int((~feature_support[cy - radius:cy + radius + 1,
                                                    cx - radius:cx + radius + 1]).sum()),
            "matches_analytic": bool(np.array_equal(feature_support, expected)),
            "input_support": [int(box.shape[0]), int(box.shape[1])],
            "input_holes": int((~box).sum()),
            "input_clipped": bool(rows.min() == 0 or cols.min() == 0
                                  or rows.max() == side - 1 or cols.max() == side - 1)}
    return results


# The claim ------------------------------------------------------------------------------

def default_task() -> str:
    """``regions`` when :mod:`fcnkit.data.synthetic` offers it, else ``objects``."""
    return "regions" if "regions" in TASKS else "objects"


def run(config: ReproduceConfig) -> dict[str, Any]:
    out = Path(config.out)
    # The context module has no backbone whose width a budget could scale.
    budget = dataclasses.replace(budget_for(config, GRID_QUICK, GRID_FULL), width=None)
    seeds = claim_seeds(config, FULL_SEEDS)
    task = str(config.extra.get("task") or default_task())

    if task not in TASKS:
        raise InputError(f"--task {task!r}: choose one of {', '.join(TASKS)}")
    data = dataset_for(config, budget, task=task)
    classes = len(class_names(data))
    planned = [(variant(schedule, front), out / "runs" / f"{schedule}-k{front}-seed{seed}",
                {"model": "context_module", "seed": seed, "backbone": None,
                 "model_options": {"front": front, "dilations": rates, "channels": CHANNELS}})
               for seed in seeds for front in FRONTS for schedule, rates in SCHEDULES.items()]
    trained = train_variants(config, budget, data, [(d, v) for _, d, v in planned])
    runs = []
    for (name, run_dir, _), result in zip(planned, trained):
        result.update(interior_scores(load_run_model(run_dir), data, classes))
        runs.append(run_record(name, result, KEYS))
    derived = advantage_runs(runs)
    results = judge("gridding", CLAIM, config, budget, data, [*runs, *derived], CLAUSES,
                    GATE_MARGIN)
    results["config"].update(seeds=seeds, task=task)
    summary = by_variant(runs, list(VARIANTS), KEYS)
    coverage = {name: coverage_report([int(r) for r in rates.split(",")], front)
                for front in FRONTS for schedule, rates in SCHEDULES.items()
                for name in [variant(schedule, front)]}
    resnet = resnet_gridding_support()
    figure = out / "gridding_coverage.png"
    _plot(figure)
    results.update(summary=summary, coverage=coverage, resnet18=resnet,
                   figures={"coverage": str(figure)})
    table = markdown_table(
        ["schedule, front end", "holes (stride-2 cells)", "holes (image pixels)",
         "interior mIoU", "checkerboard (interior)", "mIoU", "Boundary IoU"],
        [[v, coverage[v]["holes_cells"], coverage[v]["holes_pixels"],
          fmt(summary[v]["interior_miou"]), fmt(summary[v]["checkerboard"], 4),
          fmt(summary[v]["miou"]), fmt(summary[v]["boundary_iou"])] for v in VARIANTS])
    table += "\n" + resnet_table(resnet)
    write_outputs(out, results, table)
    results["table"] = table
    return results


def resnet_table(resnet: dict[str, Any]) -> str:
    """Markdown: where the dilated ResNet-18's gridding lives."""
    return markdown_table(
        ["ResNet-18 dilated FCN", "rates", "holes w.r.t. layer2 (stride-8 cells: analytic "
         "/ autograd)", "holes w.r.t. the input (pixels)"],
        [[f"one {which} output" if which == "stack" else "one logit",
          ",".join(map(str, resnet[which]["rates"])),
          f"{resnet[which]['analytic_holes']} / {resnet[which]['autograd_holes']}",
          resnet[which]["input_holes"]] for which in ("stack", "logit")])


def _plot(path: Path) -> None:
    """Image-pixel coverage of each schedule at each front end (log path count)."""
    plt = pyplot()
    fig, axes = plt.subplots(len(FRONTS), len(SCHEDULES),
                             figsize=(3.2 * len(SCHEDULES), 3.2 * len(FRONTS)),
                             squeeze=False)
    for row, front in zip(axes, FRONTS):
        for ax, (schedule, rates) in zip(row, SCHEDULES.items()):
            line = image_coverage_1d([int(r) for r in rates.split(",")], front)
            cov = np.outer(line, line)
            ax.imshow(np.where(cov > 0, np.log1p(cov), np.nan), cmap="Reds",
                      interpolation="nearest")
            ax.set_facecolor("black")
            ax.set_title(f"{schedule} {rates}, k={front}\n"
                         f"{int((cov == 0).sum())} image pixels unseen", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("one output cell's coverage in image pixels (black = never seen)",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
