"""Training throughput by precision and memory layout, and the data loader's beside it.

One process times a full training step (forward, ``fcnkit train``'s cross-entropy with
ignore index 255, backward, SGD with momentum) of FCN-8s/ResNet-18 at batch 8 × 256² for
fp32 and bf16 autocast, each in NCHW and channels_last, interleaved round by round. Then
it times the training DataLoader alone (the training transforms of ``fcnkit train``:
random scale, crop, flip, colour jitter, normalisation; ``TrainConfig``'s default
workers) on the synthetic dataset, so ``loader img/s ÷ step img/s`` says whether data
loading can keep up. The process keeps freed memory for reuse, as ``fcnkit train`` does
(:mod:`fcnkit.runtime.allocator`; ``FCNKIT_MALLOC=system`` for glibc's default;
``benchmarks/bench_malloc.py`` compares the two).

Run (results go in docs/benchmarks.md with the load average printed here)::

    .venv/bin/python benchmarks/bench_train.py --repeats 5 --warmup 2
    .venv/bin/python benchmarks/bench_train.py --backbone mobilenet_v3_large --crop 128 --json
    .venv/bin/python benchmarks/bench_train.py --widths 1,0.5,0.25 --crop 96 --repeats 7

``--widths`` times narrow copies of the backbone instead (``build_model(..., width=w)``,
fp32 channels_last as ``fcnkit train`` uses on a CPU), speed-up against the first width.

``--compile`` times eager against ``torch.compile`` (inductor) steps side by side, in fp32
channels_last (``--compile-precision bf16`` for bf16 autocast), from the same initial
weights on the same batch, so their loss curves must agree: the report gives the max
|loss difference| over all the steps (warm-up included; the first compiled step, which
compiles, is not timed)::

    .venv/bin/python benchmarks/bench_train.py --compile --repeats 7 --warmup 2

``--loss`` times the step with the textbook loss, ``F.cross_entropy(logits.float(), ...)``,
against the step with the loss ``fcnkit train`` minimises
(:func:`fcnkit.training.cross_entropy.summed_cross_entropy`: the same value, without the
layout copies and casts), channels_last, in fp32 and bf16 autocast; under bf16 also with
the frozen bilinear upsamplers in bf16 (as autocast would run them) against float32 (as
:class:`fcnkit.models.heads.GroupedBilinear` runs them). All from the same weights on the
same batch; it reports each variant's speed-up over the step as it was, and the max
|loss difference|::

    .venv/bin/python benchmarks/bench_train.py --loss --repeats 7 --warmup 2 --skip-loader

``--loader`` times only the training DataLoader (workers as ``fcnkit train``) against the
step ``fcnkit train`` runs by default on this machine (``--precision auto`` calibrated for
the model, channels_last), at the same batch, and says whether the loader keeps the
target of 3x the step's images/s::

    .venv/bin/python benchmarks/bench_train.py --loader --workers 2

Method: ``torch.set_num_threads(--threads)``, random weights and one fixed random batch per
variant (so only compute is timed); ``--warmup`` untimed steps, then ``--repeats`` rounds
each timing one step of every variant. Reported: median and minimum seconds per step,
img/s and ``speed-up`` against fp32 NCHW (medians, and minima). bf16 on a CPU without
AVX512-BF16/AMX is emulated: ``native_bf16`` in the output says which case was measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fcnkit.models import build_model
from fcnkit.models.heads import GroupedBilinear
from fcnkit.models.registry import model_options
from fcnkit.runtime import allocator
from fcnkit.runtime.precision import cpu_has_native_bf16
from fcnkit.training.config import TrainConfig
from fcnkit.training.recipe import segmentation_loss

#: The loader should deliver at least this many times the step's images/s.
LOADER_TARGET = 3.0

VARIANTS = {  # name: (autocast dtype or None, channels_last)
    "fp32 NCHW": (None, False),
    "fp32 channels_last": (None, True),
    "bf16 NCHW": (torch.bfloat16, False),
    "bf16 channels_last": (torch.bfloat16, True),
}


def build(args: argparse.Namespace, **options: Any) -> torch.nn.Module:
    """``--model`` with ``--classes`` (and ``--backbone`` where the model has one)."""
    if "backbone" in model_options(args.model):
        options["backbone"] = args.backbone
    return build_model(args.model, num_classes=args.classes, **options)


def torch_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The textbook loss: ``F.cross_entropy`` on the logits cast to float32."""
    return F.cross_entropy(logits.float(), masks, ignore_index=255)


def fcnkit_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The loss ``fcnkit train`` minimises (same value; for channels_last logits of 16
    classes or more one autograd node without layout copies)."""
    return segmentation_loss(logits, masks, None)


LOSSES = {"torch": torch_loss, "fcnkit": fcnkit_loss}


def make_step(model: torch.nn.Module, dtype: torch.dtype | None, channels_last: bool,
              images: torch.Tensor, masks: torch.Tensor,
              loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = fcnkit_loss,
              ) -> Callable[[], float]:
    """One optimizer step on a fixed batch with ``fcnkit train``'s loss (or ``loss_fn``);
    returns the loss (synced, as a log line would)."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = model(images)
        loss = loss_fn(logits, masks)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def time_steps(steps: dict[str, Callable[[], float]], repeats: int, warmup: int,
               losses: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Seconds per step of each variant, interleaved round by round; every step's loss
    is appended to ``losses[name]`` when given (warm-up steps included)."""
    for _ in range(warmup):
        for name, step in steps.items():
            loss = step()
            if losses is not None:
                losses.setdefault(name, []).append(loss)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            loss = step()
            times[name].append(time.perf_counter() - start)
            if losses is not None:
                losses.setdefault(name, []).append(loss)
    return times


def compile_rows(args: argparse.Namespace, images: torch.Tensor, masks: torch.Tensor
                 ) -> tuple[list[dict], dict]:
    """Eager vs compiled steps from the same weights; rows and the loss comparison."""
    dtype = torch.bfloat16 if args.compile_precision == "bf16" else None
    base = build(args)
    eager = make_step(copy.deepcopy(base), dtype, True, images, masks)
    compiled_model = torch.compile(copy.deepcopy(base))
    compiled = make_step(compiled_model, dtype, True, images, masks)
    losses: dict[str, list[float]] = {"eager": [eager()]}
    start = time.perf_counter()
    losses["compiled"] = [compiled()]  # the first call compiles: timed on its own
    compile_s = time.perf_counter() - start
    times = time_steps({"eager": eager, "compiled": compiled}, args.repeats, args.warmup,
                       losses)
    diff = max(abs(a - b) for a, b in zip(losses["eager"], losses["compiled"]))
    return step_rows(times, args.batch), {
        "precision": args.compile_precision, "first_compiled_step_s": round(compile_s, 1),
        "steps_compared": len(losses["eager"]), "max_abs_loss_difference": diff,
        "losses_eager": losses["eager"], "losses_compiled": losses["compiled"]}


def autocast_upsamplers(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its frozen grouped bilinear upsamplers run as autocast decides (bf16
    on a CPU): fcnkit before :class:`~fcnkit.models.heads.GroupedBilinear` kept them in
    float32."""
    for module in model.modules():
        if isinstance(module, GroupedBilinear):
            module.forward = types.MethodType(torch.nn.ConvTranspose2d.forward, module)
    return model


def loss_rows(args: argparse.Namespace, images: torch.Tensor, masks: torch.Tensor
              ) -> tuple[list[dict], dict]:
    """The step as it was (torch's loss; under bf16 autocast, the upsamplers in bf16)
    against each change alone and both, channels_last, for each precision in
    ``--loss-precisions``, from the same weights on the same batch."""
    base = build(args)
    steps, groups = {}, {}
    for precision in args.loss_precisions.split(","):
        dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
        upsamplers = ("bf16", "fp32") if dtype is not None else ("fp32",)
        names = []
        for upsampler in upsamplers:
            for loss_name, loss_fn in LOSSES.items():
                if upsampler == "fp32" and dtype is not None and loss_name == "torch":
                    continue  # the upsampler alone is the difference of the other rows
                model = copy.deepcopy(base)
                if upsampler == "bf16":
                    model = autocast_upsamplers(model)
                name = f"{precision} channels_last, {loss_name} loss"
                if dtype is not None:
                    name += f", upsamplers in {upsampler}"
                steps[name] = make_step(model, dtype, True, images, masks, loss_fn)
                names.append(name)
        groups[precision] = names
    losses: dict[str, list[float]] = {}
    times = time_steps(steps, args.repeats, args.warmup, losses)
    pairs = {}
    for names in groups.values():
        old = names[0]
        for new in names[1:]:
            pairs[f"{new} vs {old}"] = {
                "speedup_median": round(statistics.median(times[old])
                                        / statistics.median(times[new]), 3),
                "speedup_min": round(min(times[old]) / min(times[new]), 3),
                "max_abs_loss_difference": max(abs(a - b)
                                               for a, b in zip(losses[old], losses[new])),
                "steps_compared": len(losses[old])}
    return step_rows(times, args.batch), pairs


def step_rows(times: dict[str, list[float]], batch: int) -> list[dict]:
    """Median/min seconds, img/s and speed-ups against the first variant."""
    reference = next(iter(times))
    ref_median, ref_min = statistics.median(times[reference]), min(times[reference])
    rows = []
    for name, values in times.items():
        median, low = statistics.median(values), min(values)
        rows.append({"variant": name, "median_s": round(median, 3), "min_s": round(low, 3),
                     "img_per_s": round(batch / median, 2),
                     "speedup_median": round(ref_median / median, 2),
                     "speedup_min": round(ref_min / low, 2)})
    return rows


def loader_throughput(data: Path, crop: int, batch: int, workers: int, batches: int) -> float:
    """Images per second the training DataLoader delivers (no model)."""
    from torch.utils.data import DataLoader

    from fcnkit.data import open_dataset
    from fcnkit.data.transforms import pad_collate, train_transform

    config = TrainConfig(data=str(data))
    dataset = open_dataset(str(data), "train", transform=train_transform(
        crop_size=crop, scale_range=config.scale_range, hflip=config.hflip,
        color_jitter=config.color_jitter))
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        collate_fn=pad_collate, drop_last=True)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        try:
            images += int(next(iterator)[0].shape[0])
        except StopIteration:
            break
    return images / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fcn8s")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--classes", type=int, default=21,
                        help="classes of the model and the targets (21: Pascal VOC; 19: "
                        "Cityscapes; 150: ADE20K)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=TrainConfig(data=".").workers,
                        help="loader workers (default: fcnkit train's default)")
    parser.add_argument("--loader-batches", type=int, default=12)
    parser.add_argument("--data", default=None,
                        help="dataset for the loader timing (default: a synthetic one, "
                        "generated in a temporary directory)")
    parser.add_argument("--widths", default=None,
                        help="comma-separated backbone widths to compare instead of the "
                        "precisions (e.g. 1,0.5,0.25)")
    parser.add_argument("--compile", action="store_true",
                        help="eager vs torch.compile steps, with the max |loss difference|")
    parser.add_argument("--compile-precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--loss", action="store_true",
                        help="the step with F.cross_entropy vs with fcnkit's loss")
    parser.add_argument("--loss-precisions", default="fp32,bf16")
    parser.add_argument("--loader", action="store_true",
                        help="the DataLoader alone vs fcnkit train's default step (target 3x)")
    parser.add_argument("--skip-loader", action="store_true",
                        help="time the steps only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.classes < 2:
        parser.error(f"--classes {args.classes}: a segmentation needs at least 2 classes")
    # The allocator fcnkit train runs with (FCNKIT_MALLOC=system: glibc's default).
    memory = allocator.keep_freed_memory()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]

    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.crop, args.crop)
    masks = torch.randint(0, args.classes, (args.batch, args.crop, args.crop))
    extra: dict = {}
    if args.compile:
        rows, extra["compile"] = compile_rows(args, images, masks)
    elif args.loss:
        rows, extra["loss"] = loss_rows(args, images, masks)
    elif args.loader:
        from fcnkit.runtime.precision import resolve_precision

        model = build(args)
        model = model.to(memory_format=torch.channels_last)
        chosen = resolve_precision("auto", "cpu", model=model, channels_last=True)
        name = f"{chosen.name} channels_last (fcnkit train's default here)"
        rows = step_rows(time_steps({name: make_step(model, chosen.dtype, True, images, masks)},
                                    args.repeats, args.warmup), args.batch)
        extra["precision_reason"] = chosen.reason
    elif args.widths:
        steps = {f"width {w}": make_step(
            build(args, width=float(w)),
            None, True, images, masks) for w in args.widths.split(",")}
        rows = step_rows(time_steps(steps, args.repeats, args.warmup), args.batch)
    else:
        base = build(args)
        steps = {name: make_step(copy.deepcopy(base), dtype, layout, images, masks)
                 for name, (dtype, layout) in VARIANTS.items()}
        rows = step_rows(time_steps(steps, args.repeats, args.warmup), args.batch)

    loader_ips = math.nan
    if not args.skip_loader:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(args.data) if args.data else Path(tmp) / "synth"
            if not args.data:
                from fcnkit.data.synthetic import generate_synthetic_dataset

                generate_synthetic_dataset(data, train=8 * args.batch, val=1, seed=0,
                                           size=(150, 210))
            loader_ips = loader_throughput(data, args.crop, args.batch, args.workers,
                                           args.loader_batches)
    best = max(rows, key=lambda r: r["img_per_s"])
    report = {
        "model": f"{args.model} {args.backbone}", "classes": args.classes, "batch": args.batch,
        "crop": args.crop,
        "threads": args.threads, "native_bf16": cpu_has_native_bf16(), "rows": rows,
        "loader": {"workers": args.workers, "img_per_s": round(loader_ips, 1),
                   "ratio_to_first_step": round(loader_ips / rows[0]["img_per_s"], 1),
                   "ratio_to_fastest_step": round(loader_ips / best["img_per_s"], 1),
                   "target_ratio": LOADER_TARGET,
                   "keeps_target": loader_ips >= LOADER_TARGET * best["img_per_s"]},
        **extra,
        "load_average_start": load_start, "load_average_end": os.getloadavg()[0],
        "torch": torch.__version__, "allocator": memory,
    }
    if args.skip_loader:
        report["loader"] = None
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    keys = list(rows[0])
    print(f"{report['model']}, {args.classes} classes, batch {args.batch} x {args.crop}^2, "
          f"{args.threads} threads, "
          f"native bf16: {report['native_bf16']}")
    print(f"allocator: {memory}")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    if "compile" in extra:
        c = extra["compile"]
        print(f"\ncompile ({c['precision']}): first compiled step {c['first_compiled_step_s']} s;"
              f" max |loss difference| over {c['steps_compared']} steps: "
              f"{c['max_abs_loss_difference']:.3g}")
    for pair_name, pair in extra.get("loss", {}).items():
        print(f"\n{pair_name}: {pair['speedup_median']}x (minima {pair['speedup_min']}x); "
              f"max |loss difference| over {pair['steps_compared']} steps: "
              f"{pair['max_abs_loss_difference']:.3g}")
    if "precision_reason" in extra:
        print(f"\nprecision {extra['precision_reason']}")
    if not args.skip_loader:
        loader = report["loader"]
        print(f"\nloader ({args.workers} workers): {loader['img_per_s']} img/s = "
              f"{loader['ratio_to_first_step']}x the {rows[0]['variant']} step, "
              f"{loader['ratio_to_fastest_step']}x the fastest step (target >= "
              f"{LOADER_TARGET}x: {'kept' if loader['keeps_target'] else 'NOT kept'})")
    print(f"load average {load_start:.1f} at the start, {report['load_average_end']:.1f} at "
          f"the end; torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
