"""``fcnkit predict``: segment images with a checkpoint; write class-index PNGs (+ overlays).

Examples::

    fcnkit predict --checkpoint runs/demo/best.pt photo.jpg --out preds
    fcnkit predict --checkpoint runs/demo photos/ more/ --out preds --overlay
    fcnkit predict --checkpoint best.pt huge.tif --out preds --window 512 --overlap 0.5

Outputs ``OUT/<stem>.png`` (palette PNG, pixel value = class index, the checkpoint's
palette) and with ``--overlay`` ``OUT/<stem>_overlay.jpg``. Outputs follow the image's EXIF
orientation. Inputs sharing a stem get ``<stem>-2``, ``<stem>-3``, ... (the table shows
which input went where).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fcnkit.cli._common import (
    add_inference_arguments,
    format_table,
    inference_options,
    print_json,
)
from fcnkit.inference.tiling import DEFAULT_MAX_PIXELS, DEFAULT_TILE

NAME = "predict"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="segment image files or directories with a checkpoint",
        description=(
            "Segment images (files, or directories of images) and write OUT/<stem>.png, a "
            "palette PNG whose pixel values are class indices, and with --overlay "
            "OUT/<stem>_overlay.jpg. Any size and mode (grayscale, RGBA, EXIF-rotated: "
            "outputs follow the EXIF orientation). Images above --max-pixels are "
            f"segmented in overlapping {DEFAULT_TILE}-pixel tiles so memory stays bounded "
            "(--window sets another size)."
        ),
    )
    add_inference_arguments(
        parser,
        window_help="tile every image with windows of N or H,W pixels (default: whole image)",
        max_pixels_help=f"tile images with more pixels than this (default {DEFAULT_MAX_PIXELS})",
        skip_bad_help="skip unreadable images with a warning (and a count at the end) instead "
        "of stopping",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or directories")
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument(
        "--overlay", action="store_true", help="also write <stem>_overlay.jpg"
    )
    parser.add_argument(
        "--force", action="store_true",
        help="write outputs even when one is an input image, the checkpoint or a run's "
        "state (refused otherwise; an input may then be replaced before it is read)",
    )
    parser.add_argument("--json", action="store_true", help="print the outputs as JSON")
    parser.set_defaults(handler=run)


def run(args: Any) -> int:
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.inference.predict import predict_checkpoint

    report = predict_checkpoint(args.checkpoint, args.inputs, args.out, overlay=args.overlay,
                                window=args.window, force=args.force, **inference_options(args))
    if args.json:
        print_json(report)
        return 0
    rows = [
        [d["input"], Path(d["mask"]).name, d["size"],
         ", ".join(f"{k} {100 * v:.0f}%" for k, v in d["class_fractions"].items())]
        for d in report["outputs"]
    ]
    print(format_table(rows, ["input", "mask", "HxW", "main classes"]))
    extra = " (+ overlays)" if args.overlay else ""
    print(f"\n{report['num_images']} images segmented into {report['out_dir']}{extra}")
    return 0
