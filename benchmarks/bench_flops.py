"""How far each backbone's body (and the FCN-8s head) is from this CPU's fp32 limit.

For FCN-8s on each backbone (random weights, 21 classes, batch 1, ``--size`` 320x480 by
default), the body (``model.backbone``) and the head (``model.head`` on the body's
features) are timed in fp32 (channels_last unless ``--nchw``, as ``fcnkit`` runs on a CPU),
and their FLOPs are counted by :func:`fcnkit.analysis.count_flops` (the model table's
count: 2 FLOPs per multiply-add of convolutions and matrix products; the head's count is
the whole model's minus the body's). The achieved GFLOP/s is set against the same
process's fp32 GEMM throughput: ``torch.mm`` of two ``--gemm`` square matrices (4096 by
default), best of ``--gemm-repeats``, ``2 n^3`` FLOPs a call. ``of GEMM`` = achieved /
GEMM: how much of the CPU's dense-matrix speed the convolutions reach.

Run (on a quiet machine; results go in docs/benchmarks.md with the host and load average)::

    .venv/bin/python benchmarks/bench_flops.py --repeats 7 --warmup 2
    .venv/bin/python benchmarks/bench_flops.py --json > flops.json

Method: ``torch.set_num_threads(--threads)``, ``torch.inference_mode()``; each part gets
``--warmup`` untimed calls, then ``--repeats`` rounds timing body and head back to back.
GFLOP/s from the median and from the minimum time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from fcnkit.analysis import count_flops
from fcnkit.models import build_model

BACKBONES = ("resnet18", "resnet50", "vgg16", "mobilenet_v3_large")


def gemm_gflops(n: int, repeats: int) -> float:
    """Best GFLOP/s of ``torch.mm`` on two ``n x n`` float32 matrices (after one warm-up)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = min(_seconds(lambda: torch.mm(a, b, out=out)) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def _seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


class _Body(torch.nn.Module):
    """The body alone, so :func:`count_flops` can count it on a (1, 3, H, W) input."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = model.backbone

    def forward(self, x: torch.Tensor):
        return self.backbone(x)


def measure(backbone: str, size: tuple[int, int], args: argparse.Namespace,
            gemm: float) -> list[dict]:
    """Rows for the body and the head of FCN-8s on ``backbone``."""
    model = build_model("fcn8s", num_classes=21, backbone=backbone).eval()
    total = count_flops(model, size)
    body_flops = count_flops(_Body(model), size)
    head_flops = total - body_flops
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    if not args.nchw:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        features = model.backbone(x)
        parts = {"body": lambda: model.backbone(x),
                 "head": lambda: model.head(features, x.shape[-2:])}
        for _ in range(args.warmup):
            for run in parts.values():
                run()
        times: dict[str, list[float]] = {name: [] for name in parts}
        for _ in range(args.repeats):
            for name, run in parts.items():
                times[name].append(_seconds(run))
    rows = []
    for name, flops in (("body", body_flops), ("head", head_flops)):
        median, low = statistics.median(times[name]), min(times[name])
        achieved = flops / median / 1e9
        rows.append({"backbone": backbone, "part": name, "gflop": round(flops / 1e9, 3),
                     "median_ms": round(median * 1e3, 2), "min_ms": round(low * 1e3, 2),
                     "gflops_median": round(achieved, 1),
                     "gflops_best": round(flops / low / 1e9, 1),
                     "of_gemm_median": round(achieved / gemm, 3),
                     "of_gemm_best": round(flops / low / 1e9 / gemm, 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--size", default="320,480", help="H,W of the input")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gemm", type=int, default=4096, help="GEMM matrix size")
    parser.add_argument("--gemm-repeats", type=int, default=5)
    parser.add_argument("--nchw", action="store_true", help="NCHW instead of channels_last")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split(","))
    load_start = os.getloadavg()[0]
    gemm = gemm_gflops(args.gemm, args.gemm_repeats)
    rows = [row for backbone in args.backbones.split(",")
            for row in measure(backbone, size, args, gemm)]
    report = {"size": list(size), "threads": args.threads,
              "layout": "NCHW" if args.nchw else "channels_last",
              "gemm": {"n": args.gemm, "gflops_best": round(gemm, 1)}, "rows": rows,
              "load_average_start": load_start, "load_average_end": os.getloadavg()[0],
              "torch": torch.__version__}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"fp32 GEMM {args.gemm}^2: {gemm:.1f} GFLOP/s (best of {args.gemm_repeats}); "
          f"input {size[0]}x{size[1]}, {report['layout']}, {args.threads} threads")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    print(f"load average {load_start:.1f} at the start, {report['load_average_end']:.1f} at "
          f"the end; torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
