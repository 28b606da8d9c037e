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
    add_backend_arguments,
    backend_options,
    dims,
    format_table,
    print_json,
    warn,
)

NAME = "predict"


def register(subparsers: Any) -> None:
    from fcnkit.engine.predict import DEFAULT_MAX_PIXELS, DEFAULT_TILE

    parser = subparsers.add_parser(
        NAME,
        help="segment image files or directories with a checkpoint",
        description=(
            "Segment images (files, or directories of images) and write OUT/<stem>.png, a "
            "palette PNG whose pixel values are class indices, and with --overlay "
            "OUT/<stem>_overlay.jpg. Any size and mode (grayscale, RGBA, EXIF-rotated: "
            "outputs follow the EXIF orientation). Images above --max-pixels are "
            f"segmented in overlapping {DEFAULT_TILE}-pixel tiles so memory stays bounded."
        ),
    )
    parser.add_argument(
        "--checkpoint", required=True,
        help="checkpoint file, or a run directory (its best.pt, else last.pt), or an .onnx "
        "model (with --backend onnxruntime)",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or directories")
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument(
        "--overlay", action="store_true", help="also write <stem>_overlay.jpg"
    )
    parser.add_argument(
        "--window", type=dims, default=None,
        help="tile every image with windows of N or H,W pixels (default: whole image)",
    )
    parser.add_argument(
        "--overlap", type=float, default=0.33,
        help="fraction of a window shared by neighbouring windows, in [0, 1) (default 0.33)",
    )
    parser.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
        help=f"tile images with more pixels than this (default {DEFAULT_MAX_PIXELS})",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument(
        "--skip-bad", action="store_true",
        help="skip unreadable images with a warning (and a count at the end) instead of stopping",
    )
    parser.add_argument("--json", action="store_true", help="print the outputs as JSON")
    add_backend_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: Any) -> int:
    from fcnkit.arith.tiling import check_overlap
    from fcnkit.cli.eval import checkpoint_file
    from fcnkit.engine.backends import is_onnx_file, open_backend
    from fcnkit.engine.checkpoint import load_checkpoint
    from fcnkit.engine.inference import as_window, resolve_device
    from fcnkit.engine.predict import collect_images, predict_paths
    from fcnkit.errors import InputError

    window = as_window(args.window) if args.window is not None else None
    check_overlap(args.overlap)  # fail on a bad --overlap before any work
    if args.max_pixels < 1:
        raise InputError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    device = resolve_device(args.device)
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; pass a directory (it is created if missing)")
    collect_images(args.inputs)  # missing inputs / empty directories fail before loading

    source = (args.checkpoint if is_onnx_file(args.checkpoint)
              else load_checkpoint(checkpoint_file(args.checkpoint)))
    opened = open_backend(source, device=device, **backend_options(args))
    model = opened.backend
    classes = opened.classes
    num_classes = opened.num_classes or None

    done: list[dict[str, Any]] = []
    bad: list[str] = []

    def on_bad(path: Path, exc: Exception) -> None:
        bad.append(str(path))
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warn(f"skipped: {reason}" if str(path) in reason else f"skipped {path}: {reason}")

    def on_done(plan: Any, labels: Any) -> None:
        counts = labels.flatten().bincount(minlength=num_classes or 0).tolist()
        total = max(1, sum(counts))
        top = sorted(((c, i) for i, c in enumerate(counts) if c), reverse=True)[:3]
        done.append({
            "input": str(plan.source),
            "mask": str(plan.mask),
            "overlay": str(plan.overlay) if plan.overlay is not None else None,
            "size": [int(labels.shape[0]), int(labels.shape[1])],
            "class_fractions": {
                (classes[i] if i < len(classes) else str(i)): round(c / total, 4)
                for c, i in top
            },
        })

    predict_paths(
        model, args.inputs, out, palette=opened.palette or None, overlay=args.overlay,
        window=window, device=device, overlap=args.overlap, max_pixels=args.max_pixels,
        num_classes=num_classes, skip_bad=args.skip_bad, on_bad=on_bad, on_done=on_done,
    )
    if args.json:
        print_json({"out_dir": str(out), "num_images": len(done), "skipped": bad,
                    "outputs": done})
        return 0
    rows = [
        [d["input"], Path(d["mask"]).name, d["size"],
         ", ".join(f"{k} {100 * v:.0f}%" for k, v in d["class_fractions"].items())]
        for d in done
    ]
    print(format_table(rows, ["input", "mask", "HxW", "main classes"]))
    extra = " (+ overlays)" if args.overlay else ""
    print(f"\n{len(done)} images segmented into {out}{extra}")
    if bad:
        warn(f"{len(bad)} unreadable image(s) skipped")
    return 0
