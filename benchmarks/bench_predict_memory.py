"""Peak memory (RSS) of ``fcnkit predict`` on huge images, against the bound of issue 23.

Each measurement is a fresh ``python -m fcnkit predict`` subprocess started by a fresh
wrapper process, which prints ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` after it
exits: the peak resident set size of that one predict run. The model is an untrained
FCN-8s (ResNet-18 backbone, 21 classes): memory does not depend on the weights' values.

    PYTHONPATH=src python benchmarks/bench_predict_memory.py --sizes 256,4000,8000,2000x30000
    PYTHONPATH=src python benchmarks/bench_predict_memory.py --sizes 256,2000x3000 --overlay

``--malloc system,keep`` runs each size once per allocator policy, in alternating order:
``system`` is glibc's default, ``keep`` the same command with freed memory kept
(:func:`fcnkit.runtime.allocator.keep_freed_memory` called before predict starts), each
policy against its own baseline.

A size is ``N`` (N x N) or ``HxW``; the smallest runs first and is the baseline. Prints one
line per (size, overlay): peak RSS in MiB, the bytes per image pixel above the baseline
run (the image itself is 3 bytes/pixel as uint8, 12 as float32; the label map 1 byte/pixel),
and the acceptance bound for the peak above the baseline, ``image bytes x 1.5 + label
bytes + 64 MiB`` (uint8 RGB image, uint8 labels), with ``ok`` or ``OVER``. The bound is for
the label map alone; ``--overlay`` also runs with the overlay picture, which needs more.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fcnkit.models import build_model
from fcnkit.runtime.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

#: ``python -m fcnkit`` with freed memory kept from the start.
_KEEP_LAUNCHER = ("from fcnkit.runtime import allocator; allocator.keep_freed_memory(); "
                  "import runpy; runpy.run_module('fcnkit', run_name='__main__')")

_WRAPPER = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,4000,8000,2000x30000",
                        help="comma-separated N or HxW")
    parser.add_argument("--model", default="fcn8s")
    parser.add_argument("--overlay", action="store_true",
                        help="also run each size with --overlay")
    parser.add_argument("--malloc", default="system",
                        help="comma-separated allocator policies: system, keep")
    args = parser.parse_args()
    policies = args.malloc.split(",")
    if any(p not in ("system", "keep") for p in policies):
        parser.error(f"--malloc {args.malloc!r}: a comma-separated list of system, keep")
    sizes = sorted((parse_size(s) for s in args.sizes.split(",")), key=lambda hw: hw[0] * hw[1])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        model = build_model(args.model, num_classes=21, backbone="resnet18")
        ckpt = root / "model.pt"
        save_checkpoint(ckpt, {"format": CHECKPOINT_FORMAT, "model_state": model.state_dict(),
                               "model_config": {"name": args.model, "num_classes": 21,
                                                "backbone": "resnet18"},
                               "classes": [str(i) for i in range(21)], "palette": []})
        del model
        base: dict[str, int] = {}
        for index, (height, width) in enumerate(sizes):
            rng = np.random.default_rng(height * 100003 + width)
            image = root / f"img{height}x{width}.png"
            # smooth noise compresses, so the 8000x8000 PNG stays small on disk
            small = rng.integers(0, 256, (height // 50 + 1, width // 50 + 1, 3), dtype=np.uint8)
            Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR).save(image)
            runs = [(overlay, policy) for overlay in ((False, True) if args.overlay else (False,))
                    for policy in (policies if index % 2 == 0 else policies[::-1])]
            for overlay, policy in runs:
                out = root / f"out{height}x{width}{'o' if overlay else ''}{policy}"
                launch = ["-m", "fcnkit"] if policy == "system" else ["-c", _KEEP_LAUNCHER]
                argv = [sys.executable, *launch, "predict", "--checkpoint", str(ckpt),
                        str(image), "--out", str(out)] + (["--overlay"] if overlay else [])
                start = time.perf_counter()
                done = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], check=True,
                                      env=os.environ.copy(), capture_output=True, text=True)
                seconds = time.perf_counter() - start
                peak = int(done.stdout.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux
                base.setdefault(policy, peak)
                pixels = height * width
                above = peak - base[policy]
                bound = pixels * 3 * 1.5 + pixels + 64 * 2**20
                verdict = "ok" if above <= bound else "OVER"
                print(f"{height}x{width} overlay={overlay!s:5} malloc={policy:6}: "
                      f"peak RSS {peak / 2**20:7.0f} MiB "
                      f"(+{above / 2**20:6.0f} MiB over the first run, "
                      f"{above / pixels:5.1f} B/pixel; bound {bound / 2**20:6.0f} MiB: "
                      f"{verdict}), {seconds:5.1f} s", flush=True)


def parse_size(text: str) -> tuple[int, int]:
    """``"N"`` -> (N, N); ``"HxW"`` -> (H, W)."""
    height, _, width = text.strip().lower().partition("x")
    return int(height), int(width or height)


if __name__ == "__main__":
    main()
