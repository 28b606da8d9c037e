"""How many low-resolution cells need per-pixel work, on a trained model's val split.

:func:`fcnkit.inference.lowres.labels_by_pruning` labels a whole cell (a block of output
pixels fed by the same 2×2 low-resolution scores) from the scores alone when one class
survives the pruning test, and computes per pixel only the cells where several survive.
Its cost is set by the fraction of such *doubtful* cells. This script runs a checkpoint
over its dataset's val split (whole images, batch 1, as ``fcnkit eval``), counts cells
and doubtful cells, and checks on every image that the labels equal
``model(x).argmax(1)`` bit for bit (the oracle: the full-resolution logits).

With ``--time`` it also times, interleaved image by image, the backbone alone, the labels
from the coarse scores and ``model(x).argmax(1)``, so the head's overhead with labels as
output is measured on a trained model and its own data (a random network's scores are
noise, which leaves most cells in doubt: ``--random BACKBONE`` counts that case, a
21-class FCN-8s with random weights on random 320×480 inputs).

Run (the recorded number uses the demo's run: ``fcnkit demo``, then)::

    .venv/bin/python benchmarks/bench_lowres_cells.py --checkpoint runs/demo/best.pt \\
        --data voc:~/.cache/fcnkit/limbs-s0-800-200-150x210 --time
    .venv/bin/python benchmarks/bench_lowres_cells.py --random resnet18
    .venv/bin/python benchmarks/bench_lowres_cells.py --sweep

``--sweep`` times the ways to labels (the pruning with its compiled labels stage and
with torch operations, :mod:`fcnkit.inference.native`; strips; argmax of the whole map)
on coarse score maps whose fraction of doubtful cells is set by their noise: 21-class
maps of 40×60 cells (a 320×480 image at stride 8; ``--classes`` and ``--size`` change
both), each cell's class from one of 12 random Voronoi regions, score 4 for its class and 0
otherwise, plus Gaussian noise of a given σ; the upsampler is FCN-8s's own frozen ×8
bilinear deconvolution, channels_last. It is how the fraction above which whole-map
per-pixel work wins (:data:`fcnkit.inference.lowres.DENSE_WORK`) was chosen.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import torch

from fcnkit.inference import native
from fcnkit.inference.argmax import channel_argmax
from fcnkit.inference.labels import labels_by_strips
from fcnkit.inference.lowres import convex_upsampler, labels_by_pruning, labels_from_scores
from fcnkit.models import build_model
from fcnkit.reproduce.runner import val_loader
from fcnkit.runtime.checkpoint import model_from_checkpoint


def _timed(fn, x: torch.Tensor) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn(x)
    return out, time.perf_counter() - start


def count_cells(model: torch.nn.Module, images: list[torch.Tensor],
                timing: bool = False) -> dict[str, object]:
    """Cells, doubtful cells and the labels' agreement with the full argmax over
    ``images``; with ``timing``, the per-image seconds of the three paths (each image
    once warm-up, then timed, the paths back to back)."""
    if not convex_upsampler(model.final_upsampler):
        raise SystemExit("the last upsampling is learned; pruning does not apply")
    model = model.eval().to(memory_format=torch.channels_last)
    stats: dict[str, int] = {}
    mismatched = 0
    times: dict[str, list[float]] = {"backbone": [], "labels": [], "strips": [], "argmax": []}
    with torch.inference_mode():
        for x in images:
            x = x.contiguous(memory_format=torch.channels_last)
            if timing:
                # warm-up of this size, every path
                labels_by_pruning(model, x), labels_by_strips(model, x), model(x), \
                    model.backbone(x)
            labels, t_labels = _timed(lambda v: labels_by_pruning(model, v, stats=stats), x)
            full, t_argmax = _timed(lambda v: model(v).argmax(1), x)
            strips, t_strips = _timed(lambda v: labels_by_strips(model, v), x)
            mismatched += int((strips != full).sum())
            times["strips"].append(t_strips)
            _, t_body = _timed(model.backbone, x)
            mismatched += int((labels != full).sum())
            times["labels"].append(t_labels)
            times["argmax"].append(t_argmax)
            times["backbone"].append(t_body)
    result: dict[str, object] = {
        "images": len(images), "cells": stats["cells"], "doubtful": stats["doubtful"],
        "doubtful_fraction": stats["doubtful"] / stats["cells"],
        "pixels_differing_from_argmax": mismatched}
    if timing:
        body = sum(times["backbone"])
        result["ms_per_image"] = {k: round(1e3 * statistics.fmean(v), 2)
                                  for k, v in times.items()}
        result["head_overhead_labels"] = round(sum(times["labels"]) / body - 1, 4)
        result["head_overhead_argmax"] = round(sum(times["argmax"]) / body - 1, 4)
        result["head_overhead_strips"] = round(sum(times["strips"]) / body - 1, 4)
    return result


class _Scores(torch.nn.Module):
    """The coarse-score protocol around given scores and FCN-8s's final upsampler."""

    def __init__(self, upsampler: torch.nn.Module, offset: tuple[int, int]) -> None:
        super().__init__()
        self.final_upsampler, self.final_offset = upsampler, offset
        self.scores = torch.empty(0)

    def coarse_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores


def region_scores(sigma: float, seed: int, classes: int = 21, size: tuple[int, int] = (40, 60),
                  regions: int = 12) -> torch.Tensor:
    """A (1, C, h, w) channels_last score map: Voronoi regions of random classes, score 4
    for the region's class, plus N(0, σ²) noise."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    centres = torch.rand(regions, 2, generator=gen) * torch.tensor([h, w])
    grid = torch.stack(torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5,
                                      indexing="ij"), -1)
    region = torch.cdist(grid.view(-1, 2), centres).argmin(1).view(h, w)
    label = torch.randint(0, classes, (regions,), generator=gen)[region]
    scores = 4.0 * torch.nn.functional.one_hot(label, classes).permute(2, 0, 1).float()[None]
    scores += sigma * torch.randn(scores.shape, generator=gen)
    return scores.contiguous(memory_format=torch.channels_last)


def _torch_ops_labels(model: torch.nn.Module, size: tuple[int, int]) -> object:
    """The pruning with its labels stage as torch operations, not the compiled one."""
    with native.disabled():
        return labels_from_scores(model, model.scores, size)


#: Noise levels of ``--sweep``: from calm region maps to noise.
SIGMAS = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 1.25, 1.5, 1.75, 2.0, 4.0)


def sweep(repeats: int, classes: int = 21, size: tuple[int, int] = (320, 480)
          ) -> list[dict[str, float]]:
    """Per noise level: the doubtful fraction and the median ms of the three label paths
    (interleaved, after one warm-up round), on the same scores and upsampler."""
    torch.manual_seed(0)
    fcn = build_model("fcn8s", num_classes=classes, backbone="resnet18").eval()
    fcn = fcn.to(memory_format=torch.channels_last)
    model = _Scores(fcn.final_upsampler, fcn.final_offset)
    height, width = size
    x = torch.empty(1, 3, height, width)
    top, left = fcn.final_offset
    with torch.inference_mode():
        coarse = tuple(fcn.coarse_scores(torch.zeros(1, 3, height, width)).shape[-2:])
    rows = []
    with torch.inference_mode():
        for sigma in SIGMAS:
            model.scores = region_scores(sigma, seed=int(10 * sigma), classes=classes,
                                         size=coarse)
            stats: dict[str, int] = {}
            paths = {
                "pruning": lambda: labels_from_scores(model, model.scores, size),
                "pruning, torch ops": functools.partial(_torch_ops_labels, model, size),
                "strips": lambda: labels_by_strips(model, x),
                "argmax": lambda: channel_argmax(
                    model.final_upsampler(model.scores)[:, :, top : top + height,
                                                        left : left + width]),
            }
            want = fcn.final_upsampler(model.scores)
            want = want[:, :, top : top + height, left : left + width].argmax(1)
            got = labels_from_scores(model, model.scores, size, stats=stats)
            assert got is not None and torch.equal(got, want), "labels differ from argmax"
            times: dict[str, list[float]] = {name: [] for name in paths}
            for round_ in range(repeats + 1):
                for name, run in paths.items():
                    start = time.perf_counter()
                    run()
                    if round_:
                        times[name].append(time.perf_counter() - start)
            ms = {name: 1e3 * statistics.median(v) for name, v in times.items()}
            rows.append({"sigma": sigma, "doubtful": stats["doubtful"] / stats["cells"],
                         "work": stats["pairs"] / stats["cells"] / classes,
                         "exact": stats["exact"] / stats["cells"], **ms,
                         "pruning/argmax": ms["pruning"] / ms["argmax"],
                         "torch ops/argmax": ms["pruning, torch ops"] / ms["argmax"],
                         "strips/argmax": ms["strips"] / ms["argmax"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a trained checkpoint (with --data)")
    parser.add_argument("--data", help="its dataset: the val split is run")
    parser.add_argument("--random", metavar="BACKBONE",
                        help="instead: FCN-8s with random weights on 8 random 320x480 images")
    parser.add_argument("--time", action="store_true",
                        help="also time backbone, labels and argmax per image")
    parser.add_argument("--sweep", action="store_true",
                        help="instead: time the label paths against the doubtful fraction")
    parser.add_argument("--repeats", type=int, default=15, help="rounds of --sweep")
    parser.add_argument("--classes", type=int, default=21, help="classes of --sweep's maps")
    parser.add_argument("--size", default="320,480", help="image size H,W of --sweep")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.sweep:
        size = tuple(int(v) for v in args.size.split(","))
        rows = sweep(args.repeats, args.classes, (size[0], size[1]))
        if args.json:
            print(json.dumps(rows, indent=2))
            return
        print("| σ | doubtful cells | work (pairs / C·cells) | exact-path cells | pruning ms "
              "| strips ms | argmax ms | pruning / argmax | pruning by torch ops / argmax "
              "| strips / argmax |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['sigma']:g} | {100 * r['doubtful']:.1f} % | {100 * r['work']:.1f} % "
                  f"| {100 * r['exact']:.2f} % "
                  f"| {r['pruning']:.2f} | {r['strips']:.2f} | {r['argmax']:.2f} "
                  f"| {r['pruning/argmax']:.2f} | {r['torch ops/argmax']:.2f} "
                  f"| {r['strips/argmax']:.2f} |")
        return
    if args.random:
        torch.manual_seed(0)
        model = build_model("fcn8s", num_classes=21, backbone=args.random)
        images = [torch.randn(1, 3, 320, 480) for _ in range(8)]
        source = f"random FCN-8s {args.random}, random 320x480 inputs"
    elif args.checkpoint and args.data:
        model = model_from_checkpoint(args.checkpoint)
        images = [x for x, _ in val_loader(args.data)]
        source = f"{args.checkpoint} on {args.data} val"
    else:
        parser.error("give --checkpoint and --data, or --random BACKBONE")
    result = {"source": source, **count_cells(model, images, args.time)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['source']}: {result['images']} images, {result['doubtful']} of "
          f"{result['cells']} cells need per-pixel work "
          f"({100 * result['doubtful_fraction']:.2f} %); labels differing from argmax of the "
          f"full logits: {result['pixels_differing_from_argmax']} pixels")
    if args.time:
        print(f"ms per image {result['ms_per_image']}; head overhead over the backbone: "
              f"labels by pruning {100 * result['head_overhead_labels']:+.1f} %, labels by "
              f"strips {100 * result['head_overhead_strips']:+.1f} %, argmax of the logits "
              f"{100 * result['head_overhead_argmax']:+.1f} %")


if __name__ == "__main__":
    main()
