"""``--precision auto`` against fp32, for every shipped backbone, measured side by side.

Issue 23's acceptance: ``--precision auto`` is never slower than fp32 for a shipped
backbone by 5 % or more (median of 7). For FCN-8s on each backbone of
:data:`fcnkit.models.BACKBONES` (random weights, 21 classes, batch 1, channels_last as
fcnkit runs on a CPU), the script

1. asks :func:`fcnkit.runtime.precision.resolve_precision` for ``auto`` with the model, as
   ``fcnkit train/eval/predict`` do, against a fresh calibration cache in a temporary
   directory (so the choice is made now, by the model's own calibration passes, not read
   from an older run's cache);
2. times ``--repeats`` rounds of one fp32 forward pass and one forward pass at the chosen
   precision, alternated within each round (so load changes hit both alike);
3. prints the choice, the medians and ``auto / fp32`` = median(auto) / median(fp32): the
   acceptance is ``auto / fp32 < 1.05`` for every backbone.

On a CPU without native bf16, auto is fp32 by rule (no calibration) and the ratio is 1 up
to noise. Run (results go in docs/benchmarks.md with the host line printed here)::

    .venv/bin/python benchmarks/bench_precision_auto.py --repeats 7
    .venv/bin/python benchmarks/bench_precision_auto.py --only resnet18 --size 64,64 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch

from fcnkit.models import BACKBONES, build_model
from fcnkit.reproduce.runner import host_info
from fcnkit.runtime.precision import resolve_precision, time_forward

#: The acceptance: auto may not be this much slower than fp32 (median ratio).
TOLERANCE = 1.05


def measure(backbone: str, size: tuple[int, int], repeats: int) -> dict[str, object]:
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=21, backbone=backbone).eval()
    model = model.to(memory_format=torch.channels_last)
    chosen = resolve_precision("auto", "cpu", model=model, channels_last=True)
    x = torch.randn(1, 3, *size).contiguous(memory_format=torch.channels_last)
    fp32: list[float] = []
    auto: list[float] = []
    for round_ in range(repeats):
        fp32 += time_forward(model, x, None, 1, time.perf_counter, warmup=round_ == 0)
        auto += time_forward(model, x, chosen.dtype, 1, time.perf_counter,
                             warmup=round_ == 0)
    ratio = statistics.median(auto) / statistics.median(fp32)
    return {"backbone": backbone, "auto": chosen.name, "reason": chosen.reason,
            "fp32_ms": round(statistics.median(fp32) * 1e3, 2),
            "auto_ms": round(statistics.median(auto) * 1e3, 2),
            "auto_over_fp32": round(ratio, 3), "ok": ratio < TOLERANCE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="320,480", help="H,W (default 320,480)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default=None, help="comma-separated backbones")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split(","))
    backbones = args.only.split(",") if args.only else list(BACKBONES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FCNKIT_PRECISION_CACHE"] = os.path.join(tmp, "precision.json")
        for backbone in backbones:
            rows.append(measure(backbone, size, args.repeats))
    host = {**host_info(args.threads, "auto"), "load_average_end": os.getloadavg()[0]}
    if args.json:
        print(json.dumps({"host": host, "size": size, "repeats": args.repeats,
                          "rows": rows}, indent=2))
        return
    print(f"host: {host}; FCN-8s, 21 classes, batch 1, {size[0]}x{size[1]}, channels_last, "
          f"median of {args.repeats}")
    print(f"{'backbone':<20s} {'auto':>5s} {'fp32 ms':>9s} {'auto ms':>9s} "
          f"{'auto/fp32':>9s}  ok (< {TOLERANCE})")
    for r in rows:
        print(f"{r['backbone']:<20s} {r['auto']:>5s} {r['fp32_ms']:9.2f} {r['auto_ms']:9.2f} "
              f"{r['auto_over_fp32']:9.3f}  {'ok' if r['ok'] else 'SLOWER'}")
    for r in rows:
        print(f"  {r['backbone']}: {r['reason']}")


if __name__ == "__main__":
    main()
