"""Peak memory (RSS) of ``fcnkit predict`` on huge images, with and without --overlay.

Each measurement is a fresh ``python -m fcnkit predict`` subprocess started by a fresh
wrapper process, which prints ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` after it
exits: the peak resident set size of that one predict run. The model is an untrained
FCN-8s (ResNet-18 backbone, 21 classes): memory does not depend on the weights' values.

    PYTHONPATH=src python benchmarks/bench_predict_memory.py --sizes 256,4000,8000

Prints one line per (size, overlay): peak RSS in MiB, and the bytes per image pixel above
the 256x256 run (the image itself is 3 bytes/pixel as uint8, 12 as float32; the label map
1 byte/pixel).
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

_WRAPPER = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,4000,8000")
    parser.add_argument("--model", default="fcn8s")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
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
        base = None
        for size in sizes:
            rng = np.random.default_rng(size)
            image = root / f"img{size}.png"
            # smooth noise compresses, so the 8000x8000 PNG stays small on disk
            small = rng.integers(0, 256, (size // 50 + 1, size // 50 + 1, 3), dtype=np.uint8)
            Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR).save(image)
            for overlay in (False, True):
                out = root / f"out{size}{'o' if overlay else ''}"
                argv = [sys.executable, "-m", "fcnkit", "predict", "--checkpoint", str(ckpt),
                        str(image), "--out", str(out)] + (["--overlay"] if overlay else [])
                start = time.perf_counter()
                done = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], check=True,
                                      env=os.environ.copy(), capture_output=True, text=True)
                seconds = time.perf_counter() - start
                peak = int(done.stdout.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux
                if base is None:
                    base = peak
                per_pixel = (peak - base) / (size * size)
                print(f"{size}x{size} overlay={overlay!s:5}: peak RSS {peak / 2**20:7.0f} MiB "
                      f"(+{(peak - base) / 2**20:6.0f} MiB over the first run, "
                      f"{per_pixel:5.1f} B/pixel), {seconds:5.1f} s", flush=True)


if __name__ == "__main__":
    main()
