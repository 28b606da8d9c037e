"""What the settings for huge images cost in time, side by side in one process.

Images above ``--max-pixels`` are tiled with ``DEFAULT_TILE`` (256) pixels and a 32 MiB
logits budget (``HUGE_IMAGE_LOGIT_BUFFER_BYTES``) so that predict's peak memory stays
within image + labels + a small constant (docs/benchmarks.md, "Predict memory on huge
images"); before, they were tiled with 512 pixels and a 64 MiB budget. A column block of
the logits buffer owns the columns that fit the budget and reruns the tiles straddling its
left edge (``fcnkit.inference.labels.column_blocks``), so the budget also sets how many
tiles of a wide image run twice.

This times ``predict_image`` on one image for each ``TILE:BUDGET_MIB`` setting,
interleaved round by round, and prints each median against the first setting's.
Untrained FCN-8s (ResNet-18 by default, 21 classes): time does not depend on the
weights' values.

    PYTHONPATH=src python benchmarks/bench_tile_size.py --size 2000x3000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fcnkit.inference.predict import predict_image
from fcnkit.models import build_model
from fcnkit.runtime.precision import cpu_signature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2000x3000", help="HxW of the image")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--settings", default="256:32,512:64,256:64,512:32",
                        help="comma-separated TILE:BUDGET_MIB (the first is the reference)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, _, width = args.size.lower().partition("x")
    height, width = int(height), int(width or height)
    settings = [tuple(int(v) for v in s.split(":")) for s in args.settings.split(",")]
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=21, backbone=args.backbone).eval()
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    print(f"host: {cpu_signature()}; torch {torch.__version__}; {args.threads} threads; "
          f"FCN-8s {args.backbone}, {height}x{width}, overlap 0.33")
    times: dict[tuple[int, ...], list[float]] = {s: [] for s in settings}
    with torch.inference_mode():
        for tile, _ in settings:  # warm-up: oneDNN primitives for each tile shape
            predict_image(model, image[:, : tile * 2, : tile * 2], num_classes=21, window=tile)
        for _ in range(args.repeats):
            for tile, budget in settings:
                start = time.perf_counter()
                predict_image(model, image, num_classes=21, window=tile,
                              max_buffer_bytes=budget * 2**20)
                times[(tile, budget)].append(time.perf_counter() - start)
    first = statistics.median(times[settings[0]])
    for tile, budget in settings:
        median = statistics.median(times[(tile, budget)])
        print(f"tile {tile:4d}, budget {budget:3d} MiB: median {median:7.2f} s, "
              f"min {min(times[(tile, budget)]):7.2f} s, {median / first:5.2f}x the first")


if __name__ == "__main__":
    main()
