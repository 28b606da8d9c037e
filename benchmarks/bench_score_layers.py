"""What FCN-8s's three 1×1 score layers cost, and why: cold, warm, and against the GEMM.

Issue 23's ResNet-18 head misses its 3 % budget by about 1 ms; its coarse scores take
about 0.9 ms right after the backbone, a third of it in the three 1×1 score layers
(``score_fr`` on layer4, the skip scores on layer3 and layer2). This script separates
the explanations, each measured in one process:

* **cold**: each score layer on the backbone's output, right after the whole backbone
  (as the model runs it);
* **right after its stage**: each score layer right after the stage that makes its
  feature, the rest of the backbone still to come (what scoring inside the backbone's
  forward would give);
* **warm loop**: the same call repeated on the same feature;
* **reading the feature**: ``feature.sum()`` in a warm loop, the time to stream it once;
* **GEMM**: the layer's FLOPs (2 · pixels · C_in · C) at its warm-loop time, against the
  same process's ``torch.mm`` at 4096² (the machine's fp32 GEMM speed), and the same
  layer with 24 and 32 output channels (is 21 an awkward width?).

FCN-8s, ResNet-18, 21 classes, channels_last fp32, batch 1, 320×480, random weights
(timing does not depend on them).

Run (about a minute on 2 cores; nothing else running)::

    python benchmarks/bench_score_layers.py --rounds 25
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from fcnkit.models import build_model


def seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def warm_loop(call: Callable[[], object], repeats: int = 200) -> float:
    """Median seconds of ``call`` repeated back to back (after 20 unmeasured calls)."""
    for _ in range(20):
        call()
    return statistics.median(seconds(call) for _ in range(repeats))


def gemm_gflops(size: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def measure(rounds: int, size: tuple[int, int]) -> dict[str, object]:
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=21, backbone="resnet18")
    model = model.to(memory_format=torch.channels_last).eval()
    body, head = model.backbone, model.head
    layers = {"layer2": head.skip_score("layer2"), "layer3": head.skip_score("layer3"),
              "layer4": head.score_fr}
    x = torch.randn(1, 3, *size).contiguous(memory_format=torch.channels_last)
    cold: dict[str, list[float]] = {name: [] for name in layers}
    staged: dict[str, list[float]] = {name: [] for name in layers}
    with torch.inference_mode():
        for round_ in range(rounds + 3):  # three warm-up rounds
            features = body(x)
            cold_times = {name: seconds(partial(layers[name], features[name]))
                          for name in layers}
            y = body.layer1(body.maxpool(body.relu(body.bn1(body.conv1(x)))))
            stage_times = {}
            for name in layers:
                y = getattr(body, name)(y)
                stage_times[name] = seconds(partial(layers[name], y))
            if round_ >= 3:
                for name in layers:
                    cold[name].append(cold_times[name])
                    staged[name].append(stage_times[name])
        peak = gemm_gflops()
        rows = []
        for name, layer in layers.items():
            feature = features[name]
            pixels, channels = feature.shape[-2] * feature.shape[-1], feature.shape[1]
            warm = warm_loop(partial(layer, feature))
            widths = {}
            for width in (24, 32):
                wide = nn.Conv2d(channels, width, 1).to(memory_format=torch.channels_last)
                widths[width] = round(1e6 * warm_loop(partial(wide, feature)), 1)
            flops = 2 * pixels * channels * layer.out_channels
            rows.append({
                "feature": name, "shape": list(feature.shape),
                "feature_mb": round(feature.numel() * 4 / 2**20, 2),
                "cold_us": round(1e6 * statistics.median(cold[name]), 1),
                "after_stage_us": round(1e6 * statistics.median(staged[name]), 1),
                "warm_us": round(1e6 * warm, 1),
                "read_us": round(1e6 * warm_loop(feature.sum), 1),
                "gflops_warm": round(flops / warm / 1e9, 1),
                "of_gemm": round(flops / warm / 1e9 / peak, 2),
                "warm_us_by_width": widths,
            })
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "gemm_gflops": round(peak, 1), "layers": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = measure(args.rounds, (320, 480))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"torch {result['torch']}, {result['threads']} threads, fp32 GEMM at 4096²: "
          f"{result['gemm_gflops']} GFLOP/s")
    print("| score layer on | feature | cold µs | right after its stage µs | warm loop µs "
          "| reading the feature µs | GFLOP/s warm (of GEMM) | 24 / 32 outputs, warm µs |")
    print("|---|---|---|---|---|---|---|---|")
    for r in result["layers"]:
        shape = "×".join(str(v) for v in r["shape"][1:])
        widths = " / ".join(str(v) for v in r["warm_us_by_width"].values())
        print(f"| {r['feature']} | {shape} ({r['feature_mb']} MiB) | {r['cold_us']} "
              f"| {r['after_stage_us']} | {r['warm_us']} | {r['read_us']} "
              f"| {r['gflops_warm']} ({r['of_gemm']}) | {widths} |")


if __name__ == "__main__":
    main()
