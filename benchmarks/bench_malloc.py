"""The training step, or one image's labels, with glibc's default allocator against freed
memory kept for reuse.

:func:`fcnkit.runtime.allocator.keep_freed_memory` changes the C library's allocator of the
whole process, and glibc's default policy (a mmap threshold that adapts to what was freed)
cannot be put back once changed. So the two policies cannot alternate inside one process.
This script runs them in child processes started one after the other, alternating
``default, keep, keep, default, default, keep, ...`` (``--pairs`` pairs), each child
building the same model from the same seed and timing ``--repeats`` steps after
``--warmup``: drift of the machine falls on both policies alike. It prints, per policy and
precision, the median of the children's median step times, the minor page faults per step
(``getrusage``) and the children's peak resident memory, and keep's speed-up.

``--task train``: FCN-8s (``--backbone``), ``--classes`` classes, batch ``--batch`` ×
``--crop``², channels_last, the step of ``benchmarks/bench_train.py`` (SGD, fcnkit's loss).
``--task labels``: the labels of one 320×480 image as ``fcnkit eval`` computes them
(:func:`fcnkit.inference.labels.whole_image_labels` on the channels_last model, under
bf16 autocast for ``bf16``), ``--repeats`` images after ``--warmup``.

Run (results go in docs/benchmarks.md)::

    .venv/bin/python benchmarks/bench_malloc.py --pairs 3 --repeats 5 --warmup 2
    .venv/bin/python benchmarks/bench_malloc.py --task labels --pairs 3 --repeats 30 \
        --warmup 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from bench_train import make_step

from fcnkit.inference.labels import whole_image_labels
from fcnkit.models import build_model
from fcnkit.runtime import allocator


def child(spec: dict) -> dict:
    """One child's measurement (run as ``bench_malloc.py --child SPEC``): the allocator
    policy set first, then ``spec["repeats"]`` timed calls after ``spec["warmup"]``."""
    status = allocator.keep_freed_memory() if spec["policy"] == "keep" else "glibc default"
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=spec["classes"], backbone=spec["backbone"])
    dtype = torch.bfloat16 if spec["precision"] == "bf16" else None
    if spec["task"] == "train":
        size = (spec["batch"], spec["crop"], spec["crop"])
        step = make_step(model, dtype, True, torch.randn(size[0], 3, *size[1:]),
                         torch.randint(0, spec["classes"], size))
    else:
        model = model.eval().to(memory_format=torch.channels_last)
        image = torch.randn(1, 3, 320, 480).contiguous(memory_format=torch.channels_last)

        def step() -> torch.Tensor:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                 enabled=dtype is not None):
                return whole_image_labels(model, image)
    for _ in range(spec["warmup"]):
        step()
    times, faults = [], []
    for _ in range(spec["repeats"]):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return {"status": status, "torch": torch.__version__, "median_s": statistics.median(times),
            "faults_per_step": statistics.median(faults),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


POLICIES = ("default", "keep")


def run_child(policy: str, precision: str, args: argparse.Namespace) -> dict:
    spec = {"policy": policy, "precision": precision, "threads": args.threads, "task": args.task,
            "batch": args.batch, "crop": args.crop, "classes": args.classes,
            "backbone": args.backbone, "warmup": args.warmup, "repeats": args.repeats}
    env = {**os.environ, "FCNKIT_MALLOC": "keep"}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench_malloc: a child failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(child(json.loads(argv[1]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("train", "labels"), default="train")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    precisions = args.precisions.split(",")
    if args.pairs < 1 or args.repeats < 1 or any(p not in ("bf16", "fp32") for p in precisions):
        parser.error("--pairs and --repeats must be >= 1; --precisions a comma-separated "
                     "list of bf16, fp32")
    load_start = os.getloadavg()[0]
    results: dict[tuple[str, str], list[dict]] = {}
    for pair in range(args.pairs):
        order = POLICIES if pair % 2 == 0 else POLICIES[::-1]
        for policy in order:
            for precision in precisions:
                results.setdefault((precision, policy), []).append(
                    run_child(policy, precision, args))
    first = next(iter(results.values()))[0]
    what = (f"training step, batch {args.batch} x {args.crop}^2" if args.task == "train"
            else "labels of one 320x480 image")
    print(f"FCN-8s {args.backbone}, {args.classes} classes, {what}, channels_last, "
          f"{args.threads} threads; {args.pairs} children per policy, each the median of "
          f"{args.repeats} after {args.warmup}; torch {first['torch']}")
    print("| precision | allocator | s (median of children; min, max) | faults / call "
          "| peak RSS MiB | speed-up of keep |")
    print("|---|---|---|---|---|---|")
    for precision in precisions:
        medians = {}
        for policy in POLICIES:
            runs = results[(precision, policy)]
            times = [r["median_s"] for r in runs]
            medians[policy] = statistics.median(times)
            speedup = "" if policy == "default" else \
                f"{medians['default'] / medians['keep']:.2f}x"
            print(f"| {precision} | {runs[0]['status']} | {medians[policy]:.4f} "
                  f"({min(times):.4f}, {max(times):.4f}) "
                  f"| {statistics.median(r['faults_per_step'] for r in runs):.0f} "
                  f"| {max(r['peak_rss_mib'] for r in runs):.0f} | {speedup} |")
    print(f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
