"""Claim ``upsampling``: in-network upsampling by transposed convolution initialised as
bilinear interpolation; does learning it matter, and does the initialisation?

Long et al. (2015, §3.3, §4.2) initialise the deconvolution layers to bilinear
interpolation and report that learning the final ×8 (or ×32) layer did not help, so it is
fixed; the learnable 2× layers start bilinear. The variants, all FCN-8s on the same
backbone, data, budget and seeds:

* ``bilinear-frozen``: transposed convolutions fixed to the bilinear kernel;
* ``deconv-bilinear-init``: learnable transposed convolutions starting bilinear;
* ``deconv-random-init``: learnable transposed convolutions with PyTorch's default
  (Kaiming-uniform) initialisation — the whole initial network is written to a weights
  file and handed to the training loop (``model_options={"weights": ...}``);
* ``interpolate``: ``F.interpolate`` (bilinear), no parameters.

Besides the final scores the claim reports the epochs each variant needs to reach 90 % of
its own final val mIoU (the initialisation claim: a good init converges sooner).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from fcnkit.reproduce.runner import (
    FULL,
    QUICK,
    ReproduceConfig,
    budget_for,
    class_names,
    dataset_for,
    describe,
    fmt,
    markdown_table,
    mean_std,
    near_chance,
    summarise,
    train_variant,
    write_outputs,
)

CLAIM = "Bilinear-initialised transposed convolution trains as well as (or better than) " \
        "frozen bilinear or interpolation, and better or sooner than a random init."
# variant -> (upsample option, random init of the transposed convolutions)
VARIANTS: dict[str, tuple[str, bool]] = {
    "bilinear-frozen": ("bilinear", False),
    "deconv-bilinear-init": ("deconv", False),
    "deconv-random-init": ("deconv", True),
    "interpolate": ("interpolate", False),
}
KEYS = ("miou", "trimap_miou", "boundary_iou")
# Four variants instead of three: 16 epochs keep 3 seeds x 4 variants within 45 min on 2
# cores (about 11 s per epoch of 800 images with validation, docs/reproductions.md).
UPSAMPLING_QUICK = dataclasses.replace(QUICK, epochs=8)
UPSAMPLING_FULL = dataclasses.replace(FULL, epochs=16)


def epochs_to_fraction(epochs: list[dict[str, Any]], fraction: float = 0.9) -> int | None:
    """First epoch whose val mIoU reaches ``fraction`` × the last epoch's (None if never)."""
    if not epochs:
        return None
    final = epochs[-1]["miou"]
    return next((e["epoch"] for e in epochs if e["miou"] >= fraction * final), None)


def random_init_weights(path: Path, num_classes: int, seed: int,
                        width: float | None = None) -> str:
    """Write an FCN-8s (backbone ``width``) whose transposed convolutions have PyTorch's
    default init."""
    import torch
    from torch import nn

    from fcnkit.models import build_model

    torch.manual_seed(seed)
    model = build_model("fcn8s", num_classes=num_classes, backbone="resnet18",
                        upsample="deconv", width=width)
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d):
            module.reset_parameters()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return str(path)


def run(config: ReproduceConfig) -> dict[str, Any]:
    out = Path(config.out)
    budget = budget_for(config, UPSAMPLING_QUICK, UPSAMPLING_FULL)
    data = dataset_for(config, budget)
    num_classes = len(class_names(data))
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for seed in config.seed_list():
        for variant, (upsample, random_init) in VARIANTS.items():
            run_dir = out / "runs" / f"{variant}-seed{seed}"
            options = {}
            if random_init:
                options["weights"] = random_init_weights(
                    out / "init" / f"fcn8s-random-deconv-seed{seed}.pt", num_classes, seed,
                    budget.width)
            result = train_variant(config, budget, data, run_dir, model="fcn8s", seed=seed,
                                   upsample=upsample, model_options=options)
            result["epochs_to_90"] = epochs_to_fraction(result["epochs"])
            runs[variant].append(result)
    summary = {v: {**summarise(runs[v], KEYS),
                   "epochs_to_90": mean_std([r["epochs_to_90"] or float("nan")
                                             for r in runs[v]])}
               for v in VARIANTS}
    figure = out / "upsampling_curves.png"
    _plot_curves(runs, figure)
    best = max(VARIANTS, key=lambda v: summary[v]["miou"]["mean"])
    bil, rnd = summary["deconv-bilinear-init"]["miou"], summary["deconv-random-init"]["miou"]
    gap = bil["mean"] - rnd["mean"]
    spread = max(bil["std"], rnd["std"])
    if gap > spread and best != "deconv-random-init":
        verdict, reason = "reproduced", (f"bilinear init beats random init by {gap:.3f} mIoU "
                                         f"(seed spread {spread:.3f}); best: {best}")
    elif gap < -spread:
        verdict, reason = "not reproduced", (f"random init beats bilinear init by {-gap:.3f} "
                                             f"mIoU (seed spread {spread:.3f})")
    else:
        verdict, reason = "inconclusive", (f"bilinear vs random init differ by {gap:+.3f} "
                                           f"mIoU, within the seed spread {spread:.3f}")
    if (untrained := near_chance(summary, data)) is not None:
        verdict, reason = "inconclusive", untrained
    results = {"claim": "upsampling", "claim_text": CLAIM, "config": describe(config, budget),
               "data": data, "runs": runs, "summary": summary,
               "figures": {"curves": str(figure)}, "verdict": verdict,
               "verdict_reason": reason}
    table = markdown_table(
        ["variant", "mIoU", f"trimap mIoU (d={config.boundary_width})", "Boundary IoU",
         "epochs to 90 % of final"],
        [[v, fmt(summary[v]["miou"]), fmt(summary[v]["trimap_miou"]),
          fmt(summary[v]["boundary_iou"]), fmt(summary[v]["epochs_to_90"], 1)]
         for v in VARIANTS])
    write_outputs(out, results, table)
    results["table"] = table
    return results


def _plot_curves(runs: dict[str, list[dict[str, Any]]], path: Path) -> None:
    from fcnkit.viz import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (variant, seeds) in enumerate(runs.items()):
        for j, run in enumerate(seeds):
            ax.plot([e["epoch"] for e in run["epochs"]], [e["miou"] for e in run["epochs"]],
                    "o-", color=f"C{i}", alpha=0.8, label=variant if j == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mIoU")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
