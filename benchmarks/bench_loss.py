"""The training loss alone, forward and backward: ``F.cross_entropy`` against fcnkit's.

For each class count in ``--classes``, one process times side by side, interleaved round
by round (in reversed order every other round), on the same channels_last logits
(``--batch`` × ``--size``², fp32 and bf16):

* ``torch``: ``F.cross_entropy(logits.float(), masks, ignore_index=255, reduction="sum")``,
  the textbook loss;
* ``fcnkit``: :func:`fcnkit.training.cross_entropy.summed_cross_entropy`, the loss
  ``fcnkit train`` minimises (below ``SHORT_ROWS`` classes it is ``F.cross_entropy``
  itself, so there the two columns differ by noise only);
* ``fcnkit, class axis last``: the same with the class axis of channels_last logits put
  last whatever the class count (``SHORT_ROWS = 0``), which shows what the threshold
  :data:`fcnkit.training.cross_entropy.SHORT_ROWS` is worth on either side of it.

It prints the median milliseconds and each variant's speed-up against ``torch``.

Run (results go in docs/benchmarks.md)::

    .venv/bin/python benchmarks/bench_loss.py --repeats 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from fcnkit.training import cross_entropy
from fcnkit.training.cross_entropy import summed_cross_entropy


def torch_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), masks, ignore_index=255, reduction="sum")


def fcnkit_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return summed_cross_entropy(logits, masks)


def fcnkit_class_axis_last(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    short_rows = cross_entropy.SHORT_ROWS
    cross_entropy.SHORT_ROWS = 0
    try:
        return summed_cross_entropy(logits, masks)
    finally:
        cross_entropy.SHORT_ROWS = short_rows


VARIANTS = {"torch": torch_loss, "fcnkit": fcnkit_loss,
            "fcnkit, class axis last": fcnkit_class_axis_last}


def time_losses(classes: int, dtype: torch.dtype, batch: int, size: int, repeats: int
                ) -> dict[str, float]:
    """Median seconds of forward + backward for each variant (one warm-up round)."""
    generator = torch.Generator().manual_seed(classes)
    logits = torch.randn(batch, classes, size, size, generator=generator).to(dtype)
    logits = logits.contiguous(memory_format=torch.channels_last)
    masks = torch.randint(0, classes, (batch, size, size), generator=generator)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(repeats + 1):
        # Reversed every other round: a variant's time depends on what ran just before it
        # (allocator and cache state), so no variant always follows the same one.
        order = list(VARIANTS.items())
        for name, loss_fn in (order if round_ % 2 else order[::-1]):
            x = logits.detach().requires_grad_()
            start = time.perf_counter()
            loss_fn(x, masks).backward()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="2,4,8,12,16,21,150",
                        help="comma-separated class counts")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        counts = [int(c) for c in args.classes.split(",")]
        if any(c < 2 for c in counts):
            raise ValueError
    except ValueError:
        print(f"bench_loss: --classes {args.classes!r} must be comma-separated integers "
              ">= 2, e.g. 2,4,21", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    print(f"loss forward + backward, batch {args.batch} x {args.size}^2, channels_last, "
          f"{args.threads} threads, median of {args.repeats}, torch {torch.__version__}")
    print("| classes | dtype | torch ms | fcnkit ms (speed-up) "
          "| fcnkit, class axis last ms (speed-up) |")
    print("|---|---|---|---|---|")
    for classes in counts:
        for dtype in (torch.float32, torch.bfloat16):
            t = time_losses(classes, dtype, args.batch, args.size, args.repeats)
            base = t["torch"]
            cells = " | ".join(f"{1e3 * t[name]:.2f} ({base / t[name]:.2f}x)"
                               for name in ("fcnkit", "fcnkit, class axis last"))
            print(f"| {classes} | {str(dtype).removeprefix('torch.')} | {1e3 * base:.2f} "
                  f"| {cells} |")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
