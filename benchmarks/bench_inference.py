"""Inference latency by execution path, measured side by side in one process.

For FCN-8s on ResNet-18, MobileNetV3-Large and VGG16 (random weights, 21 classes, batch
1, 320×480): eager fp32 NCHW (today's path) against channels_last, bf16 autocast +
channels_last (also with the frozen bilinear upsamplers in bf16, as before
:class:`fcnkit.models.heads.GroupedBilinear` kept them in float32), ``torch.compile``,
onnxruntime fp32 and onnxruntime int8 (static QDQ), plus labels computed strip by strip
without full-resolution logits, and the backbone alone (the head's overhead with labels
as output). Then fcnkit's ``fcn_dilated resnet50 os8`` against torchvision's
``fcn_resnet50`` (same architecture; weights=None, nothing downloads).

Run (results go in docs/benchmarks.md with the load average printed here)::

    .venv/bin/python benchmarks/bench_inference.py --repeats 7 --warmup 2
    .venv/bin/python benchmarks/bench_inference.py --only resnet18 --repeats 2 --no-compile
    .venv/bin/python benchmarks/bench_inference.py --only resnet50 --head-only --repeats 7
    .venv/bin/python benchmarks/bench_inference.py --checkpoint runs/demo --data synth:DIR

With ``--checkpoint`` and ``--data`` it also evaluates the checkpoint's mIoU on the data's
val split through each backend (torch fp32, bf16, onnxruntime fp32, onnxruntime int8
calibrated on 16 training images), so the speed-ups come with their accuracy cost.

Method: ``torch.set_num_threads(--threads)`` and as many onnxruntime intra-op threads
(spinning off), ``torch.inference_mode()``; every path gets ``--warmup`` untimed calls, then
``--repeats`` rounds each time every path once, back to back (interleaved, so load changes
hit all paths alike). Reported: median and minimum ms, and ``speed-up`` = eager fp32 time /
path time from the medians (and from the minima, which a shared machine disturbs least).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

# bench_train.py's helper, imported rather than copied (benchmarks/ is not a package).
import bench_train  # noqa: E402  (the directory of this script is on sys.path)
import torch

from fcnkit.inference.backends import OnnxRuntimeBackend, TorchBackend
from fcnkit.inference.export import export_onnx, quantize_int8
from fcnkit.inference.labels import labels_by_strips
from fcnkit.models import build_model
from fcnkit.runtime.precision import cpu_has_native_bf16

BACKBONES = ("resnet18", "mobilenet_v3_large", "vgg16")


def interleaved(paths: dict[str, Callable[[], object]], repeats: int, warmup: int
                ) -> dict[str, list[float]]:
    """Seconds per call of each path: ``warmup`` untimed calls, then ``repeats`` rounds."""
    with torch.inference_mode():
        for _ in range(warmup):
            for run in paths.values():
                run()
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(repeats):
            for name, run in paths.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return times


def summarise(times: dict[str, list[float]], reference: str) -> list[dict[str, object]]:
    ref_median = statistics.median(times[reference])
    ref_min = min(times[reference])
    rows = []
    for name, values in times.items():
        median, low = statistics.median(values), min(values)
        rows.append({"path": name, "median_ms": round(1000 * median, 1),
                     "min_ms": round(1000 * low, 1),
                     "speedup_median": round(ref_median / median, 2),
                     "speedup_min": round(ref_min / low, 2)})
    return rows


def random_calibration(size: tuple[int, int], count: int = 8) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(1, 3, *size, generator=generator) for _ in range(count)]


def paths_for(backbone: str, size: tuple[int, int], args: argparse.Namespace,
              workdir: Path) -> tuple[dict[str, Callable[[], object]], dict[str, object]]:
    """The timed callables for FCN-8s on ``backbone`` and facts about them."""
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=21, backbone=backbone).eval()
    x = torch.randn(1, 3, *size)
    paths: dict[str, Callable[[], object]] = {
        "eager fp32 NCHW (logits)": lambda: model(x),
        "eager fp32 NCHW (labels)": lambda: model(x).argmax(1),
        "labels by strips": lambda: labels_by_strips(model, x),
        "backbone alone": lambda: model.backbone(x),
    }
    nhwc = TorchBackend(copy.deepcopy(model), channels_last=True)
    paths["channels_last"] = lambda: nhwc(x)
    paths["channels_last, labels from coarse scores"] = lambda: nhwc.predict_labels(x)
    x_nhwc_body = x.contiguous(memory_format=torch.channels_last)
    paths["backbone alone, channels_last"] = lambda: nhwc.model.backbone(x_nhwc_body)
    facts: dict[str, object] = {}
    if args.head_only:
        # Only what the head's overhead with labels as output needs (issue 23's check).
        keep = ("channels_last", "channels_last, labels from coarse scores",
                "backbone alone, channels_last")
        return {name: paths[name] for name in keep}, facts
    bf16 = TorchBackend(copy.deepcopy(model), precision="bf16", channels_last=True)
    paths["bf16 + channels_last"] = lambda: bf16(x)
    # Before GroupedBilinear kept them in float32: the upsamplers in bf16, as autocast does.
    bf16_upsamplers = TorchBackend(bench_train.autocast_upsamplers(copy.deepcopy(model)),
                                   precision="bf16", channels_last=True)
    paths["bf16 + channels_last, upsamplers in bf16"] = lambda: bf16_upsamplers(x)
    if not args.no_compile:
        compiled = torch.compile(copy.deepcopy(model).to(memory_format=torch.channels_last))
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(x_nhwc)
        facts["compile_s"] = round(time.perf_counter() - start, 1)
        paths["torch.compile + channels_last"] = lambda: compiled(x_nhwc)
    if not args.no_onnx:
        start = time.perf_counter()
        fp32_file = export_onnx(model, workdir / f"{backbone}.onnx", dynamic=True)
        facts["export_s"] = round(time.perf_counter() - start, 1)
        ort_fp32 = OnnxRuntimeBackend(fp32_file, threads=args.threads)
        paths["onnxruntime fp32"] = lambda: ort_fp32(x)
        int8_file = quantize_int8(fp32_file, workdir / f"{backbone}-int8.onnx",
                                  random_calibration(size))
        ort_int8 = OnnxRuntimeBackend(int8_file, threads=args.threads)
        paths["onnxruntime int8"] = lambda: ort_int8(x)
    return paths, facts


def dilated_paths(size: tuple[int, int]) -> tuple[dict[str, Callable[[], object]], dict]:
    """fcnkit fcn_dilated resnet50 os8 vs torchvision fcn_resnet50 (no aux head)."""
    from torchvision.models.segmentation import fcn_resnet50

    torch.manual_seed(0)
    ours = build_model("fcn_dilated", num_classes=21, backbone="resnet50", output_stride=8,
                       upsample="interpolate").eval()
    theirs = fcn_resnet50(weights=None, weights_backbone=None, num_classes=21,
                          aux_loss=False).eval()
    x = torch.randn(1, 3, *size)
    params = {"fcnkit": sum(p.numel() for p in ours.parameters()),
              "torchvision": sum(p.numel() for p in theirs.parameters())}
    return ({"torchvision fcn_resnet50": lambda: theirs(x)["out"],
             "fcnkit fcn_dilated resnet50 os8": lambda: ours(x)}, {"params": params})


def accuracy(args: argparse.Namespace, workdir: Path) -> list[dict[str, object]]:
    """mIoU on the val split through each backend (same checkpoint, same images)."""
    from fcnkit.inference.evaluate import evaluate_checkpoint
    from fcnkit.inference.export import export_checkpoint

    fp32_file = workdir / "checkpoint.onnx"
    int8_file = workdir / "checkpoint-int8.onnx"
    export_checkpoint(args.checkpoint, fp32_file, dynamic=True)
    export_checkpoint(args.checkpoint, int8_file, dynamic=True, quantize="int8",
                      calibrate=args.data, calibration_images=16)
    runs = [("torch fp32", args.checkpoint, {"precision": "fp32"}),
            ("torch bf16 + channels_last", args.checkpoint,
             {"precision": "bf16", "channels_last": True}),
            ("onnxruntime fp32", fp32_file, {"backend": "onnxruntime"}),
            ("onnxruntime int8", int8_file, {"backend": "onnxruntime"})]
    rows = []
    for name, source, options in runs:
        start = time.perf_counter()
        result = evaluate_checkpoint(source, args.data, split="val", **options)
        rows.append({"path": name, "miou": round(100 * result["miou"], 2),
                     "pixel_acc": round(100 * result["pixel_acc"], 2),
                     "seconds": round(time.perf_counter() - start, 1)})
    return rows


def head_overhead(model_times: list[float], body_times: list[float]) -> str:
    """``model / backbone - 1`` by median and by minimum, e.g. ``+2.0% median, +1.5% min``."""
    median = statistics.median(model_times) / statistics.median(body_times) - 1
    fastest = min(model_times) / min(body_times) - 1
    return f"{median:+.1%} median, {fastest:+.1%} min"


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    print(f"\n{title}")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="320,480", help="H,W (default 320,480)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--only", default=None,
                        help="the default backbones containing this text, or a backbone name")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--head-only", action="store_true",
                        help="time only channels_last logits, labels (from the coarse "
                             "scores) and the backbone alone: the head's overhead")
    parser.add_argument("--no-onnx", action="store_true", help="skip onnxruntime paths")
    parser.add_argument("--no-dilated", action="store_true",
                        help="skip fcn_dilated vs torchvision fcn_resnet50")
    parser.add_argument("--checkpoint", default=None, help="checkpoint for the mIoU table")
    parser.add_argument("--data", default=None, help="dataset for the mIoU table")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.split(","))
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    report: dict[str, object] = {
        "load_average_start": os.getloadavg()[0], "threads": args.threads, "size": size,
        "torch": torch.__version__, "native_bf16": cpu_has_native_bf16(), "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # --only picks the default backbones containing the text, else names one backbone.
        chosen = [b for b in BACKBONES if not args.only or args.only in b] or [args.only]
        for backbone in chosen:
            paths, facts = paths_for(backbone, size, args, workdir)
            times = interleaved(paths, args.repeats, args.warmup)
            rows = summarise(times, "eager fp32 NCHW (logits)" if not args.head_only
                             else "channels_last")
            # The head's cost with labels as output: each labels path against the backbone
            # alone in the same layout (median and min of the interleaved rounds).
            facts["head_overhead_labels"] = {
                name: head_overhead(times[name], times[body])
                for name, body in (("eager fp32 NCHW (labels)", "backbone alone"),
                                   ("labels by strips", "backbone alone"),
                                   ("channels_last, labels from coarse scores",
                                    "backbone alone, channels_last"))
                if name in times and body in times}
            report["models"][f"fcn8s {backbone}"] = {"rows": rows, **facts}
            if not args.json:
                print_table(f"fcn8s {backbone} {size[0]}x{size[1]} {facts}", rows)
        if not args.no_dilated and not args.only and not args.head_only:
            paths, facts = dilated_paths(size)
            rows = summarise(interleaved(paths, args.repeats, args.warmup),
                             "torchvision fcn_resnet50")
            report["dilated"] = {"rows": rows, **facts}
            if not args.json:
                print_table(f"dilated ResNet-50 FCN {facts}", rows)
        if args.checkpoint and args.data:
            rows = accuracy(args, workdir)
            report["accuracy"] = rows
            if not args.json:
                print_table(f"mIoU on {args.data} val", rows)
    report["load_average_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"\nload average {report['load_average_start']:.1f} at the start, "
              f"{report['load_average_end']:.1f} at the end; native bf16: "
              f"{report['native_bf16']}; torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
