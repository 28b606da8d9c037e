"""The FCN head's cost with labels as output, timed on its own, beside the backbone.

Issue 23's head overhead is (model with labels − backbone) / backbone. On a shared
machine whose speed drifts by tens of percent within a minute, the difference of two
large noisy times is mostly noise; here every round times, for each head path, the
backbone on the image and then the head on those very features, so the ratio comes from
measurements taken back to back in one process, each head right after the backbone as
in the model.

Head paths, each giving ``model(x).argmax(1)`` bit for bit (checked once per backbone):

* ``pruning``: the coarse scores, then :func:`fcnkit.inference.lowres.labels_from_scores`
  (whole cells labelled from the scores, per-pixel work only for doubtful cells), as
  :func:`fcnkit.inference.labels.whole_image_labels` runs it when the map is not too
  noisy;
* ``whole map``: the coarse scores, the last upsampling of the whole map and its argmax;
* ``strips``: the coarse scores, then the last upsampling and argmax 64 rows at a time;
* ``pruning, torch ops``: the same with the labels stage as torch operations instead of
  the compiled one (:mod:`fcnkit.inference.native`), side by side;
* ``coarse scores only``: the floor under every path, the model's coarse scores alone;
* ``default``: what ``whole_image_labels`` does (``labels_from_coarse``: pruning if
  the map is large and calm enough, else the whole map, else strips).

FCN-8s, 21 classes, channels_last fp32 (``--precision bf16``: backbone and head under
bf16 autocast), batch 1, 320×480. By default the weights are
random (nothing downloads) and the image is noise: most cells are then in doubt, a
worst case no trained network shows. ``--train-steps N`` first trains each network for N
AdamW steps (batch 4, 160×224) on the project's limbs task (4 of the 21 classes occur),
then times it on limbs validation images rendered at 320×480, one per round: score
maps with the structure of a trained network's, whose doubtful cells are the objects'
boundaries.

Run::

    .venv/bin/python benchmarks/bench_head_labels.py --rounds 21
    .venv/bin/python benchmarks/bench_head_labels.py --rounds 21 --train-steps 150 \
        --only resnet18
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from fcnkit.data.limbs import render_limbs_sample
from fcnkit.data.transforms import normalize
from fcnkit.inference import native
from fcnkit.inference.argmax import channel_argmax
from fcnkit.inference.labels import labels_by_strips, labels_from_coarse, whole_image_labels
from fcnkit.inference.lowres import labels_from_scores
from fcnkit.models import build_model

BACKBONES = ("resnet18", "resnet50", "vgg16", "mobilenet_v3_large")
TARGETS = {"resnet18": 0.03, "resnet50": 0.03, "vgg16": 0.03, "mobilenet_v3_large": 0.08}


def limbs_batch(split: str, first: int, count: int, size: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised channels_last images and their masks from the limbs task (seed 0)."""
    images, masks = [], []
    for index in range(first, first + count):
        image, mask, _ = render_limbs_sample(0, split, index, size)
        images.append(normalize(torch.as_tensor(image).permute(2, 0, 1).float() / 255))
        masks.append(torch.as_tensor(mask).long())
    return torch.stack(images).contiguous(memory_format=torch.channels_last), torch.stack(masks)


def train(model: torch.nn.Module, steps: int) -> float:
    """``steps`` AdamW steps (lr 1e-3, batch 4, 160×224 limbs images); the last loss."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=1e-4)
    model.train()
    loss = torch.zeros(())
    for step in range(steps):
        images, masks = limbs_batch("train", 4 * step, 4, (160, 224))
        loss = torch.nn.functional.cross_entropy(model(images), masks, ignore_index=255)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return float(loss.detach())


def measure(backbone: str, rounds: int, size: tuple[int, int],
            train_steps: int = 0, one_thread_labels: bool = False,
            precision: str = "fp32") -> dict[str, object]:
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=21, backbone=backbone)
    model = model.to(memory_format=torch.channels_last)
    last_loss = train(model, train_steps) if train_steps else None
    model.eval()
    if train_steps:
        images = [limbs_batch("val", i, 1, size)[0] for i in range(8)]
    else:
        images = [torch.randn(1, 3, *size).contiguous(memory_format=torch.channels_last)]
    height, width = size
    top, left = model.final_offset

    def float_scores(features: dict) -> torch.Tensor:
        # Under bf16 autocast the scores are bf16 and the last upsampler (GroupedBilinear)
        # casts them to float32 itself: the pruning takes that float32 copy, as
        # labels_from_coarse does.
        return model.head.coarse(features).float()

    def pruning(features: dict) -> object:
        scores = float_scores(features)
        labels = labels_from_scores(model, scores, size, stats=stats)
        return labels

    def whole_map(features: dict) -> torch.Tensor:
        scores = model.head.coarse(features)
        logits = model.final_upsampler(scores)
        return channel_argmax(logits[:, :, top : top + height, left : left + width])

    def pruning_torch_ops(features: dict) -> object:
        # The same labels stage by torch operations instead of the compiled one.
        scores = float_scores(features)
        with native.disabled():
            return labels_from_scores(model, scores, size)

    def coarse_only(features: dict) -> torch.Tensor:
        # The floor of every path: the model's own coarse scores, no labels.
        return model.head.coarse(features)

    def strips(features: dict) -> torch.Tensor:
        return labels_by_strips(model, x, scores=model.head.coarse(features))

    def default(features: dict) -> torch.Tensor:
        return labels_from_coarse(model, model.head.coarse(features), size)

    def default_one_thread(features: dict) -> torch.Tensor:
        # The coarse scores on every thread, the labels on one (their ops are small).
        scores = model.head.coarse(features)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return labels_from_coarse(model, scores, size)
        finally:
            torch.set_num_threads(threads)

    heads = {"pruning": pruning, "whole map": whole_map, "strips": strips,
             "pruning, torch ops": pruning_torch_ops}
    if one_thread_labels:
        heads["default, labels on 1 thread"] = default_one_thread
    timed = {**heads, "default": default, "coarse scores only": coarse_only}
    stats: dict[str, int] = {}
    times: dict[str, list[float]] = {"backbone": [], **{name: [] for name in timed}}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                enabled=precision == "bf16"):
        for x in images:
            want = model(x).argmax(1)
            features = model.backbone(x)
            for name, head in heads.items():
                assert torch.equal(head(features), want), f"{name} differs from argmax"
            assert torch.equal(whole_image_labels(model, x), want)
        stats.clear()
        for round_ in range(rounds + 2):  # two warm-up rounds
            x = images[round_ % len(images)]
            # The backbone again before each head, so every head runs right after it,
            # with the caches as the backbone leaves them, as in the model.
            for name in timed:
                start = time.perf_counter()
                features = model.backbone(x)
                body = time.perf_counter() - start
                if round_ >= 2:
                    times["backbone"].append(body)
                start = time.perf_counter()
                timed[name](features)
                if round_ >= 2:
                    times[name].append(time.perf_counter() - start)
    body = statistics.median(times["backbone"])
    body_min = min(times["backbone"])
    result: dict[str, object] = {
        "backbone": backbone, "precision": precision, "backbone_ms": round(1e3 * body, 2),
        "weights": f"trained {train_steps} steps (loss {last_loss:.3f})" if train_steps
        else "random",
        "doubtful_fraction": round(stats["doubtful"] / stats["cells"], 4),
        "work_fraction": round(stats["pairs"] / stats["cells"] / 21, 4),
        "exact_fraction": round(stats["exact"] / stats["cells"], 4),
        "emulated_fraction": round(stats.get("emulated", 0) / stats["cells"], 4),
        "labels_stage": native.status(),
        "overhead_median": {k: round(statistics.median(v) / body, 4)
                            for k, v in times.items() if k != "backbone"},
        "overhead_min": {k: round(min(v) / body_min, 4)
                         for k, v in times.items() if k != "backbone"},
        "target": TARGETS[backbone]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--only", choices=BACKBONES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=0,
                        help="train each network this many steps on limbs first (default 0: "
                        "random weights, noise images)")
    parser.add_argument("--one-thread-labels", action="store_true",
                        help="also time the default with its labels stage on 1 thread")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: backbone and head under bf16 autocast, what --precision "
                        "auto picks where bf16 pays")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [measure(b, args.rounds, (320, 480), args.train_steps, args.one_thread_labels,
                       args.precision)
               for b in ((args.only,) if args.only else BACKBONES)]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    load = open("/proc/loadavg").read().split()[0] if platform.system() == "Linux" else "?"
    print(f"torch {torch.__version__}, {args.threads} threads, {args.precision}, load average "
          f"{load} at the end; labels stage: {native.status()}")
    print("| backbone | weights | backbone ms | doubtful cells | work | head: default | pruning "
          "| whole map | strips | target |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        med, low = r["overhead_median"], r["overhead_min"]
        cells = " | ".join(f"+{100 * med[k]:.1f} % (+{100 * low[k]:.1f} %)"
                           for k in ("default", "pruning", "whole map", "strips"))
        print(f"| {r['backbone']} | {r['weights']} | {r['backbone_ms']} "
              f"| {100 * r['doubtful_fraction']:.1f} % "
              f"| {100 * r['work_fraction']:.1f} % | {cells} | ≤ {100 * r['target']:.0f} % |")
        print(f"  cells left to the exact path: {100 * r['exact_fraction']:.2f} %, of which "
              f"labelled by the emulated rounding: {100 * r['emulated_fraction']:.2f} %")
        for name in med:
            if name not in ("default", "pruning", "whole map", "strips"):
                print(f"  {name}: +{100 * med[name]:.1f} % (+{100 * low[name]:.1f} %)")


if __name__ == "__main__":
    main()
