"""CPU latency of each FCN and of its backbone alone, in the same run: the head's overhead.

The FCN head (score layers, skip fusions, upsampling) should add at most ~10% to the
backbone for ``upsample="bilinear"`` (grouped, frozen transposed convolution) and
``"interpolate"``; d2l's dense C x C x 64 x 64 transposed convolution costs far more.

Run (results go in docs/benchmarks.md with the load average printed here)::

    .venv/bin/python benchmarks/bench_models.py                  # 320x480, batch 1, 2 threads
    .venv/bin/python benchmarks/bench_models.py --only resnet18 --repeats 10 --json

Method: ``torch.set_num_threads(2)``, eval mode, ``torch.inference_mode()``, batch 1;
``--warmup`` untimed runs, then ``--repeats`` rounds that time, back to back (interleaved, so
a change in machine load hits all three), the backbone alone, the head alone (on the
backbone's features: score layers, skips, upsampling, crop) and the whole model. Reported:
median and minimum of each; ``overhead = head / backbone`` (median, and from the minima,
which other processes on a shared machine disturb least) and ``total = model / backbone - 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from fcnkit.models import build_model
from fcnkit.models.fcn import D2LFCN, DilatedFCN

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


def split(model: nn.Module) -> tuple[nn.Module, Callable[[torch.Tensor], object],
                                       Callable[[object, torch.Tensor], torch.Tensor]]:
    """(backbone module, backbone call, head call) of a model, so each can be timed alone."""
    if isinstance(model, D2LFCN):
        body = nn.Sequential(*list(model.children())[:8])

        def head(features, x):
            scores = model.transpose_conv(model.final_conv(features))
            return scores[..., : x.shape[-2], : x.shape[-1]]

        return body, body, head
    if isinstance(model, DilatedFCN):
        def dilated_head(features, x):
            deepest = features[model.backbone.deepest]
            scores = model.upsample(model.classifier(deepest))
            return scores[..., : x.shape[-2], : x.shape[-1]]

        return model.backbone, model.backbone, dilated_head
    return model.backbone, model.backbone, lambda features, x: model.head(features, x.shape[-2:])


def _time(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def bench(model: nn.Module, size: tuple[int, int], warmup: int, repeats: int) -> dict:
    """Median and minimum seconds of backbone, head alone and whole model (interleaved)."""
    model.eval()
    body, body_call, head_call = split(model)
    body.eval()
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        features = body_call(x)
        for _ in range(warmup):
            body_call(x)
            head_call(features, x)
            model(x)
        times: dict[str, list[float]] = {"backbone": [], "head": [], "model": []}
        for _ in range(repeats):
            times["backbone"].append(_time(body_call, x))
            times["head"].append(_time(head_call, features, x))
            times["model"].append(_time(model, x))
    out: dict[str, float] = {}
    for key, values in times.items():
        out[f"{key}_median_s"] = statistics.median(values)
        out[f"{key}_min_s"] = min(values)
    # Head overhead measured directly (head alone / backbone alone), median and best case,
    # and indirectly (whole model / backbone - 1, medians).
    out["overhead_median"] = out["head_median_s"] / out["backbone_median_s"]
    out["overhead_min"] = out["head_min_s"] / out["backbone_min_s"]
    out["overhead_total"] = out["model_median_s"] / out["backbone_median_s"] - 1
    return out


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
            ms = {k: v * 1e3 for k, v in result.items() if k.endswith("_s")}
            print(f"{label:<58} backbone {ms['backbone_median_s']:7.1f} "
                  f"(min {ms['backbone_min_s']:6.1f}) ms  head {ms['head_median_s']:6.1f} "
                  f"(min {ms['head_min_s']:5.1f}) ms  model {ms['model_median_s']:7.1f} ms  "
                  f"overhead {result['overhead_median'] * 100:5.1f}% "
                  f"(min {result['overhead_min'] * 100:5.1f}%, total "
                  f"{result['overhead_total'] * 100:5.1f}%)", flush=True)
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
