"""``fcnkit eval``: the FCN paper's metrics of a checkpoint on a dataset split.

Examples::

    fcnkit eval --checkpoint runs/demo/best.pt --data ~/.cache/fcnkit/synth
    fcnkit eval --checkpoint runs/demo --data voc:VOCdevkit/VOC2012 --split val --json
    fcnkit eval --checkpoint best.pt --data folder:DATA --sliding --window 320,480 --overlap 0.5
    torchrun --standalone --nproc-per-node 2 -m fcnkit eval --checkpoint runs/demo --data DIR

The computation is :func:`fcnkit.inference.evaluate.evaluate_checkpoint`; this module parses
and prints.
"""

from __future__ import annotations

from typing import Any

from fcnkit.cli._common import (
    add_inference_arguments,
    format_table,
    inference_options,
    int_in,
    print_json,
    ranged,
)
from fcnkit.inference.tiling import DEFAULT_MAX_PIXELS, DEFAULT_TILE, DEFAULT_WINDOW
from fcnkit.runtime import allocator

NAME = "eval"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="evaluate a checkpoint: per-class IoU, pixel acc, mean acc, mIoU, fwIoU",
        description=(
            "Run a checkpoint over a dataset split and print the per-class IoU table and "
            "the four metrics of Long et al. (2015) computed from one confusion matrix "
            "accumulated over the whole split (pixels labelled 255 are ignored). "
            "Inference is whole-image by default (images above --max-pixels are tiled); "
            "--sliding averages the logits of overlapping windows. Under torchrun the "
            "split is sharded over the processes and rank 0 prints the result."
        ),
    )
    add_inference_arguments(
        parser,
        window_help="sliding-window size: N or H,W pixels (implies --sliding)",
        max_pixels_help=f"without --sliding, tile images with more pixels than this by "
        f"{DEFAULT_TILE}-px windows, as fcnkit predict does (default {DEFAULT_MAX_PIXELS})",
        skip_bad_help="skip unreadable or inconsistent samples with a warning instead of "
        "stopping",
    )
    parser.add_argument(
        "--data", required=True,
        help="dataset: voc:ROOT, cityscapes:ROOT, ade20k:ROOT, folder:ROOT, synth:ROOT or a "
        "directory (layout detected)",
    )
    parser.add_argument("--split", default="val", help="split to evaluate (default val)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument(
        "--sliding", action="store_true",
        help=f"sliding-window inference (window {DEFAULT_WINDOW} unless --window is given)",
    )
    parser.add_argument(
        "--batch-size", type=ranged("batch_size"), default=1,
        help="images per batch (default 1, exact); larger batches pad smaller images with "
        "ignored pixels, which slightly changes predictions near their bottom/right edges",
    )
    parser.add_argument("--workers", type=ranged("workers"), default=0,
                        help="DataLoader workers (default 0)")
    parser.add_argument(
        "--boundary-width", type=int_in(0, 1024), default=3, metavar="D",
        help="also report trimap mIoU and Boundary IoU within D pixels of the true "
        "boundaries (default 3; 0 = off)",
    )
    parser.set_defaults(handler=run)


def run(args: Any) -> int:
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.inference.evaluate import evaluate_checkpoint

    # Every image allocates and frees the same tensors: keep freed memory for the next one
    # (fcnkit.runtime.allocator; benchmarks/bench_malloc.py --task labels).
    allocator.keep_freed_memory()
    window_size = args.window
    if window_size is None and args.sliding:
        window_size = (DEFAULT_WINDOW, DEFAULT_WINDOW)
    result = evaluate_checkpoint(
        args.checkpoint, args.data, split=args.split, window=window_size,
        batch_size=args.batch_size, workers=args.workers,
        boundary_width=args.boundary_width or None, **inference_options(args),
    )
    if args.json:
        print_json(result)  # strict JSON: an undefined score (NaN) is null
        return 0
    print(format_report(result, result["classes"]))
    mode = f"whole-image up to {args.max_pixels} pixels" if window_size is None else (
        f"sliding window {window_size[0]}x{window_size[1]}, overlap {args.overlap:g}")
    skipped = f" ({result['skipped']} bad samples skipped)" if result["skipped"] else ""
    print(f"\n{result['num_images']} images of split {args.split!r}{skipped}, {mode}, "
          f"model {result['checkpoint']} ({result['backend']})")
    return 0


def format_report(result: dict[str, Any], classes: list[str]) -> str:
    """The per-class IoU table followed by the four summary metrics."""
    ious = list(result.get("iou", []))
    rows = []
    for index, iou in enumerate(ious):
        name = classes[index] if index < len(classes) else str(index)
        rows.append([index, name, _percent(iou)])
    per_class = format_table(rows, ["id", "class", "IoU %"])
    summary = format_table(
        [
            ["pixel accuracy", _percent(result.get("pixel_acc"))],
            ["mean accuracy", _percent(result.get("mean_acc"))],
            ["mean IoU", _percent(result.get("miou"))],
            ["frequency-weighted IoU", _percent(result.get("fwiou"))],
            *_boundary_rows(result.get("boundary")),
        ],
        ["metric", "%"],
    )
    return f"{per_class}\n\n{summary}"


def _boundary_rows(boundary: dict[str, Any] | None) -> list[list[str]]:
    if not boundary:
        return []
    d = boundary["width"]
    return [[f"trimap pixel accuracy (d={d})", _percent(boundary["trimap_pixel_acc"])],
            [f"trimap mean IoU (d={d})", _percent(boundary["trimap_miou"])],
            [f"Boundary IoU (d={d})", _percent(boundary["boundary_iou"])]]


def _percent(value: Any) -> str:
    """Fraction → percentage with 2 decimals, right-aligned; NaN/None (absent class) → "-"."""
    if value is None or float(value) != float(value):  # NaN: absent from target and prediction
        return f"{'-':>6}"
    return f"{100.0 * float(value):6.2f}"
