"""Two builds of the compiled labels stage (``_labels.c``), timed side by side.

Changes to the C function are small against the noise of a shared machine, so both
builds are compiled with the flags of :mod:`fcnkit.inference.native`, loaded into one
process and called alternately on the same score map, each call right after the
backbone (the caches as the backbone leaves them, as in the model). The ratio of the
medians is the change. Both builds must give the same labels and counts (checked first).

The map: FCN-8s ResNet-18, 21 classes, random weights, a noise image at 320×480
(channels_last fp32) — about half its cells in doubt, the worst case of
``bench_head_labels.py``. Both sources must have the same ``fk_abi`` (9: without the
emulated rounding's argument, 10: with it, passed as NULL so both builds do the same
work).

Run::

    git show 9cafcc4:src/fcnkit/inference/_labels.c > /tmp/old_labels.c
    git show af675c8:src/fcnkit/inference/_labels.c > /tmp/new_labels.c
    .venv/bin/python benchmarks/bench_labels_builds.py /tmp/old_labels.c /tmp/new_labels.c
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from fcnkit.inference import lowres, native
from fcnkit.models import build_model


def build(source: Path, work: Path, name: str) -> ctypes.CDLL | str:
    """``source`` compiled as ``native`` compiles ``_labels.c``, or why it cannot be."""
    compiler = shutil.which("cc")
    if compiler is None:
        return "no C compiler (cc)"
    if not source.is_file():
        return f"{source}: no such file"
    target = work / f"{name}.so"
    done = subprocess.run([compiler, *native._FLAGS, "-o", str(target), str(source), "-lm"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"{source}: {compiler} failed: {done.stderr.strip().splitlines()[-1:]}"
    library = ctypes.CDLL(str(target))
    if not hasattr(library, "fk_abi") or library.fk_abi() not in (9, 10):
        return f"{source}: not a _labels.c of ABI 9 or 10 (fk_abi)"
    library.fk_labels_2x2.restype = ctypes.c_int
    pointer, i64 = ctypes.c_void_p, ctypes.c_int64
    # plan, scores, n, C, max_work, labels, info, room (, emulation: ABI 10)
    library.fk_labels_2x2.argtypes = [pointer, pointer, i64, i64, ctypes.c_double, pointer,
                                      pointer, i64] + [pointer] * (library.fk_abi() - 9)
    return library


def call(library: ctypes.CDLL, plan: native.Plan, scores: torch.Tensor
         ) -> tuple[torch.Tensor, list[int]]:
    """One ``fk_labels_2x2`` call: the labels and the first four counts."""
    labels = torch.empty((scores.shape[0], *plan.size), dtype=torch.int64)
    room = native.UNDECIDED_ROOM
    info = (ctypes.c_int64 * (5 + room))()
    extra = [None] * (library.fk_abi() - 9)
    library.fk_labels_2x2(plan.address, scores.data_ptr(), scores.shape[0], scores.shape[1],
                          0.5, labels.data_ptr(), info, room, *extra)
    return labels, info[:4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="the first build's _labels.c")
    parser.add_argument("new", type=Path, help="the second build's _labels.c")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=21, backbone="resnet18")
    model = model.to(memory_format=torch.channels_last).eval()
    x = torch.randn(1, 3, 320, 480).contiguous(memory_format=torch.channels_last)
    upsampler = model.final_upsampler
    top, left = model.final_offset
    with tempfile.TemporaryDirectory() as work, torch.inference_mode():
        builds: dict[str, ctypes.CDLL] = {}
        for name in ("old", "new"):
            built = build(getattr(args, name), Path(work), name)
            if isinstance(built, str):
                parser.error(built)  # one line, exit 2
            builds[name] = built
        if builds["old"].fk_abi() != builds["new"].fk_abi():
            parser.error("the two sources have different ABIs (fk_abi)")
        scores = model.head.coarse(model.backbone(x))
        geometry = (320, 480, top, left, *scores.shape[-2:], *(
            int(v[0]) for v in (upsampler.kernel_size, upsampler.stride, upsampler.padding)))
        plan = lowres._plan_for(upsampler, lowres._convex_facts(upsampler)[1], geometry)
        assert plan is not None
        first = {name: call(lib, plan, scores) for name, lib in builds.items()}
        assert torch.equal(first["old"][0], first["new"][0])
        assert first["old"][1] == first["new"][1], (first["old"][1], first["new"][1])
        times: dict[str, list[float]] = {"old": [], "new": []}
        for round_ in range(args.rounds + 2):
            order = ("old", "new") if round_ % 2 else ("new", "old")
            for name in order:
                scores = model.head.coarse(model.backbone(x))
                start = time.perf_counter()
                call(builds[name], plan, scores)
                if round_ >= 2:  # two warm-up rounds
                    times[name].append(time.perf_counter() - start)
    old, new = (statistics.median(times[k]) for k in ("old", "new"))
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, {args.rounds} rounds; counts {first['old'][1]}")
    print(f"old {1e6 * old:.0f} µs, new {1e6 * new:.0f} µs (medians), new / old "
          f"{new / old:.3f}")


if __name__ == "__main__":
    main()
