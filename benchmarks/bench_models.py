"""CPU latency of each FCN and of its backbone alone, in the same run: the head's overhead.

The FCN head (score layers, skip fusions, upsampling) should add at most ~10% to the
backbone for ``upsample="bilinear"`` (grouped, frozen transposed convolution) and
``"interpolate"``; d2l's dense C x C x 64 x 64 transposed convolution costs far more.

Run (results go in docs/benchmarks.md with the load average printed here)::

    .venv/bin/python benchmarks/bench_models.py                  # 320x480, batch 1, 2 threads
    .venv/bin/python benchmarks/bench_models.py --only resnet18 --repeats 10 --json

Method: ``torch.set_num_threads(2)``, eval mode, ``torch.inference_mode()``, batch 1;
``--warmup`` untimed runs, then ``--repeats`` rounds that time the backbone and the whole
model back to back (interleaved, so a change in machine load hits both); the median of each
is reported, and ``overhead = model / backbone - 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from torch import nn

from fcnkit.models import build_model
from fcnkit.models.fcn import D2LFCN

VARIANTS: list[tuple[str, dict]] = [
    ("fcn32s", {"backbone": "resnet18", "upsample": "bilinear"}),
    ("fcn32s", {"backbone": "resnet18", "upsample": "interpolate"}),
    ("fcn32s", {"backbone": "resnet18", "upsample": "deconv"}),
    ("fcn_resnet18_d2l", {}),
    ("fcn8s", {"backbone": "resnet18", "upsample": "bilinear"}),
    ("fcn8s", {"backbone": "resnet18", "upsample": "interpolate"}),
    ("fcn8s", {"backbone": "resnet18", "upsample": "deconv"}),
    ("fcn8s", {"backbone": "resnet50", "upsample": "bilinear"}),
    ("fcn8s", {"backbone": "mobilenet_v3_large", "upsample": "bilinear"}),
    ("fcn8s", {"backbone": "mobilenet_v3_large", "upsample": "interpolate"}),
    ("fcn8s", {"backbone": "vgg16", "upsample": "bilinear"}),
    ("fcn8s", {"backbone": "vgg16", "upsample": "interpolate"}),
    ("fcn8s", {"backbone": "vgg16", "faithful": True}),
    ("fcn_dilated", {"backbone": "resnet18", "output_stride": 8, "upsample": "bilinear"}),
]


def backbone_of(model: nn.Module) -> nn.Module:
    """The feature extractor alone (for d2l: ResNet-18's children 0..7)."""
    if isinstance(model, D2LFCN):
        return nn.Sequential(*list(model.children())[:8])
    return model.backbone


def _time(fn, x: torch.Tensor) -> float:
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


def bench(model: nn.Module, size: tuple[int, int], warmup: int, repeats: int) -> dict:
    model.eval()
    body = backbone_of(model).eval()
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        for _ in range(warmup):
            body(x)
            model(x)
        body_times, model_times = [], []
        for _ in range(repeats):
            body_times.append(_time(body, x))
            model_times.append(_time(model, x))
    b, m = statistics.median(body_times), statistics.median(model_times)
    return {"backbone_s": b, "model_s": m, "head_s": m - b, "overhead": m / b - 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="320,480", help="input H,W (320,480)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default="", help="substring filter on 'name options'")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    h, w = (int(v) for v in args.size.split(","))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name, options in VARIANTS:
        label = " ".join([name, *(f"{k}={v}" for k, v in options.items())])
        if args.only and args.only not in label:
            continue
        model = build_model(name, num_classes=21, **options)
        result = bench(model, (h, w), args.warmup, args.repeats)
        rows.append({"model": label, **result})
        del model
        if not args.json:
            print(f"{label:<62} backbone {result['backbone_s'] * 1e3:8.1f} ms  "
                  f"model {result['model_s'] * 1e3:8.1f} ms  head {result['head_s'] * 1e3:7.1f} ms"
                  f"  overhead {result['overhead'] * 100:6.1f}%", flush=True)
    load = os.getloadavg()
    meta = {"size": [h, w], "threads": args.threads, "batch": 1, "repeats": args.repeats,
            "warmup": args.warmup, "torch": torch.__version__,
            "loadavg_after": [round(v, 2) for v in load]}
    if args.json:
        json.dump({"meta": meta, "results": rows}, sys.stdout, indent=2)
        print()
    else:
        print(f"# {meta}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
