"""Where a CPU training step's time goes, eager and ``torch.compile``d: why compiling gives
little on a CPU.

``torch.compile`` (inductor) fuses the element-wise work between convolutions (BatchNorm,
ReLU, additions, the loss) into generated C++ loops; the convolutions themselves, forward
and backward, stay oneDNN calls in both. A step dominated by convolutions can therefore
gain at most the non-convolution share. This script profiles ``--steps`` steps of
FCN-8s (``bench_train.py``'s step: batch 8 × 256², cross-entropy, SGD with momentum,
channels_last, fp32 or ``--precision bf16`` autocast) with :mod:`torch.profiler`, eager and
compiled from the same weights, and prints for each the share of self CPU time in
convolution kernels (``aten::*convolution*`` forward and backward, oneDNN's
``mkldnn_convolution`` and their callees) and the top operators, plus the bound on the
speed-up that share implies (1 / convolution share, were everything else free).

Run (on a quiet machine; results go in docs/benchmarks.md)::

    .venv/bin/python benchmarks/profile_train_step.py --steps 3
    .venv/bin/python benchmarks/profile_train_step.py --precision bf16 --steps 3
"""

from __future__ import annotations

import argparse
import copy
import os

# bench_train.py's step, imported rather than copied (benchmarks/ is not a package).
import bench_train  # noqa: E402  (the directory of this script is on sys.path)
import torch
from torch.profiler import ProfilerActivity, profile

from fcnkit.models import build_model
from fcnkit.runtime import allocator

CONVOLUTION = ("conv", "mkldnn_convolution")


def profile_step(step, steps: int) -> dict[str, object]:
    step()  # warm-up (and, compiled, the compilation)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")
              or "mkldnn" in e.key or e.key.startswith("Torch-Compiled")
              or "cpp_fused" in e.key or "graph_" in e.key]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    conv = sum(e.self_cpu_time_total for e in events
               if any(k in e.key.lower() for k in CONVOLUTION))
    top = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    return {"total_ms_per_step": total / 1e3 / steps,
            "convolution_share": conv / total if total else float("nan"),
            "top": [(e.key, round(e.self_cpu_time_total / 1e3 / steps, 1)) for e in top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    memory = allocator.keep_freed_memory()  # as fcnkit train runs (FCNKIT_MALLOC=system: not)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.crop, args.crop)
    masks = torch.randint(0, 21, (args.batch, args.crop, args.crop))
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    base = build_model("fcn8s", num_classes=21, backbone=args.backbone)
    results = {
        "eager": profile_step(bench_train.make_step(copy.deepcopy(base), dtype, True, images,
                                                    masks), args.steps),
        "compiled": profile_step(bench_train.make_step(torch.compile(copy.deepcopy(base)),
                                                       dtype, True, images, masks),
                                 args.steps),
    }
    print(f"FCN-8s {args.backbone}, batch {args.batch} x {args.crop}^2, {args.precision}, "
          f"channels_last, {args.threads} threads, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f}; {memory}")
    for name, r in results.items():
        share = r["convolution_share"]
        print(f"\n{name}: {r['total_ms_per_step']:.0f} ms of self CPU time per step "
              f"(all threads); convolutions {100 * share:.1f} % -> a speed-up from fusing "
              f"the rest is at most {1 / share:.2f}x")
        for key, ms in r["top"]:
            print(f"  {ms:9.1f} ms  {key}")


if __name__ == "__main__":
    main()
