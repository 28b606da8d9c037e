"""The training loss alone, forward and backward: ``F.cross_entropy`` against fcnkit's.

For each class count in ``--classes``, one process times side by side, interleaved round
by round (in reversed order every other round), on the same channels_last logits
(``--batch`` × ``--size``², fp32 and bf16):

* ``torch``: ``F.cross_entropy(logits.float(), masks, ignore_index=255, reduction="sum")``,
  the textbook loss;
* ``fcnkit``: :func:`fcnkit.training.cross_entropy.summed_cross_entropy`, the loss
  ``fcnkit train`` minimises (below ``COMPILED_ROWS`` classes, or ``SHORT_ROWS`` without
  the compiled loss, it is ``F.cross_entropy`` itself: there the columns differ by noise
  only);
* ``fcnkit, torch operations``: the same with the one-node loss as torch operations
  (:func:`fcnkit.training.cross_entropy.torch_operations`), as it runs without a C
  compiler;
* ``compiled, class axis last``: the compiled one-node loss with the class axis of
  channels_last logits put last whatever the class count (``COMPILED_ROWS = 0``), which
  shows what the threshold :data:`fcnkit.training.cross_entropy.COMPILED_ROWS` is worth
  on either side of it.

It prints the median milliseconds and each variant's speed-up against ``torch``.

``--first-touch`` times instead what a gradient's fresh memory costs: the compiled
backward alone (``fk_ce_backward``, on the same threads) writing into a buffer reused
from the previous call against a freshly allocated one (as autograd gives it), and
``fill_`` of a reused against a fresh tensor of the logits' size, interleaved round by
round. On a host where a first touch of memory is dear (a virtual machine), most of the
backward's time is the operating system providing the pages, not the loss.

Run (results go in docs/benchmarks.md)::

    .venv/bin/python benchmarks/bench_loss.py --repeats 15
    .venv/bin/python benchmarks/bench_loss.py --first-touch --classes 21 --repeats 15
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


def fcnkit_torch_operations(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    with cross_entropy.torch_operations():
        return summed_cross_entropy(logits, masks)


def compiled_class_axis_last(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    compiled_rows = cross_entropy.COMPILED_ROWS
    cross_entropy.COMPILED_ROWS = 0
    try:
        return summed_cross_entropy(logits, masks)
    finally:
        cross_entropy.COMPILED_ROWS = compiled_rows


VARIANTS = {"torch": torch_loss, "fcnkit": fcnkit_loss,
            "fcnkit, torch operations": fcnkit_torch_operations,
            "compiled, class axis last": compiled_class_axis_last}
SHOWN = tuple(VARIANTS)[1:]


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


def first_touch(classes: int, batch: int, size: int, repeats: int) -> dict[str, float]:
    """Median seconds of the compiled backward and of ``fill_``, into reused and fresh
    float32 memory of the logits' size."""
    library = cross_entropy._library()
    if library is None:
        raise SystemExit(f"bench_loss: --first-touch needs the compiled loss: "
                         f"{cross_entropy.native_status()}")
    generator = torch.Generator().manual_seed(classes)
    logits = torch.randn(batch, size, size, classes, generator=generator)
    masks = torch.randint(0, classes, (batch, size, size), generator=generator)
    pixels = masks.numel()
    lse = torch.logsumexp(logits, dim=-1).reshape(-1).contiguous()
    reused = torch.empty_like(logits)

    def backward(out: torch.Tensor) -> None:
        cross_entropy._run_split(lambda begin, end, _: library.fk_ce_backward(
            logits.data_ptr(), 0, begin, end, classes, masks.data_ptr(), 255, None,
            lse.data_ptr(), 1.0, out.data_ptr()), pixels)

    cases = {"backward, reused output": lambda: backward(reused),
             "backward, fresh output": lambda: backward(torch.empty_like(logits)),
             "fill_, reused tensor": lambda: reused.fill_(1.0),
             "fill_, fresh tensor": lambda: torch.empty_like(logits).fill_(1.0)}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(repeats + 1):
        order = list(cases.items())
        for name, call in (order if round_ % 2 else order[::-1]):
            start = time.perf_counter()
            call()
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
    parser.add_argument("--first-touch", action="store_true",
                        help="the compiled backward into reused vs fresh memory")
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
    print(f"compiled loss: {cross_entropy.native_status()}")
    if args.first_touch:
        print(f"float32 class-last logits; {4 * args.batch * args.size ** 2 / 2 ** 20:.1f} "
              "MiB per class")
        for row, classes in enumerate(counts):
            t = first_touch(classes, args.batch, args.size, args.repeats)
            if not row:
                print("| classes | " + " | ".join(f"{name} ms" for name in t) + " |")
                print("|---|" + "---|" * len(t))
            print(f"| {classes} | " + " | ".join(f"{1e3 * v:.2f}" for v in t.values()) + " |")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
        return 0
    print("| classes | dtype | torch ms | " + " | ".join(f"{n} ms (speed-up)" for n in SHOWN)
          + " |")
    print("|---|---|---|" + "---|" * len(SHOWN))
    for classes in counts:
        for dtype in (torch.float32, torch.bfloat16):
            t = time_losses(classes, dtype, args.batch, args.size, args.repeats)
            base = t["torch"]
            cells = " | ".join(f"{1e3 * t[name]:.2f} ({base / t[name]:.2f}x)"
                               for name in SHOWN)
            print(f"| {classes} | {str(dtype).removeprefix('torch.')} | {1e3 * base:.2f} "
                  f"| {cells} |")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
