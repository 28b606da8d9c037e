"""The labels' first pruning stage, eager against compiled (inductor), after the backbone.

Issue 23's ResNet-18 head is made of about 90 small eager operations, each slower right
after the backbone than in a warm loop (docs/benchmarks.md). Fusing them is the lever
left; this measures whether ``torch.compile`` delivers it on the stage that runs on every
image: the corners-agree test of :func:`fcnkit.inference.lowres.labels_from_scores`
(:func:`fcnkit.inference.lowres.corners_agree`, timed as the library runs it: per
low-resolution pixel its best class and its rivals within the margin, then the four
corners of every cell compared). Its outputs are checked equal to the eager stage's on
every image; each round times the backbone, the coarse scores, then one of the two
stages, alternating.

FCN-8s, ResNet-18, 21 classes, channels_last fp32, batch 1, 320×480; the network is
trained ``--train-steps`` AdamW steps on the limbs task first (as
``bench_head_labels.py --train-steps``) and timed on limbs validation images. Needs a
C++ compiler (inductor on CPU).

Run (about 2 minutes on 2 cores, compilation included; nothing else running)::

    python benchmarks/bench_compiled_pruning.py --rounds 25 --train-steps 150
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from bench_head_labels import limbs_batch, train  # this script's directory is on sys.path

from fcnkit.inference.lowres import MARGIN, _grid, corners_agree
from fcnkit.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=21, backbone="resnet18")
    model = model.to(memory_format=torch.channels_last)
    train(model, args.train_steps)
    model.eval()
    size = (320, 480)
    images = [limbs_batch("val", i, 1, size)[0] for i in range(8)]
    upsampler = model.final_upsampler
    top, left = model.final_offset
    compiled = torch.compile(corners_agree, dynamic=False)
    stages = {"eager": corners_agree, "compiled": compiled}
    times: dict[str, list[float]] = {name: [] for name in stages}
    with torch.inference_mode():
        def coarse(x: torch.Tensor) -> torch.Tensor:
            scores = model.head.coarse(model.backbone(x))
            return scores.contiguous(memory_format=torch.channels_last)

        scores = coarse(images[0])
        grid = _grid(*size, top, left, scores.shape[-2], scores.shape[-1],
                     int(upsampler.kernel_size[0]), int(upsampler.stride[0]),
                     int(upsampler.padding[0]))
        corner = torch.as_tensor(grid.corners).clone()
        start = time.perf_counter()
        for x in images:
            scores = coarse(x)
            tolerance = MARGIN * (1.0 + float(scores.abs().amax()))
            want = corners_agree(scores, corner, tolerance)
            got = compiled(scores, corner, tolerance)
            assert all(torch.equal(a, b) for a, b in zip(want, got)), "compiled stage differs"
        first_pass = time.perf_counter() - start
        for round_ in range(args.rounds + 3):  # three warm-up rounds
            x = images[round_ % len(images)]
            for name, stage in stages.items():
                scores = coarse(x)
                tolerance = MARGIN * (1.0 + float(scores.abs().amax()))
                begin = time.perf_counter()
                stage(scores, corner, tolerance)
                if round_ >= 3:
                    times[name].append(time.perf_counter() - begin)
    result = {"torch": torch.__version__, "threads": args.threads,
              "first_pass_s": round(first_pass, 1),
              **{f"{name}_us": round(1e6 * statistics.median(v), 1)
                 for name, v in times.items()}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"torch {result['torch']}, {args.threads} threads; first pass (compilation "
          f"included) {result['first_pass_s']} s")
    print(f"corners-agree stage right after the backbone, median of {args.rounds}: eager "
          f"{result['eager_us']} µs, compiled {result['compiled_us']} µs")


if __name__ == "__main__":
    main()
