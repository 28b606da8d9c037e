"""``fcnkit export``: write a checkpoint as an ONNX model (dynamic sizes, optional int8).

Examples::

    fcnkit export runs/demo/best.pt --format onnx --dynamic -o model.onnx
    fcnkit export runs/demo --dynamic --quantize int8 --calibrate ~/.cache/fcnkit/synth -o int8.onnx

Run the result with ``fcnkit predict/eval --checkpoint model.onnx --backend onnxruntime``.
"""

from __future__ import annotations

from typing import Any

from fcnkit.cli._common import dims, format_table, print_json

NAME = "export"


def register(subparsers: Any) -> None:
    from fcnkit.engine.export import DEFAULT_EXPORT_SIZE, EXPORTERS

    size = ",".join(map(str, DEFAULT_EXPORT_SIZE))
    parser = subparsers.add_parser(
        NAME,
        help="export a checkpoint to ONNX (dynamic batch/height/width, optional int8)",
        description=(
            "Export a checkpoint (file, or run directory: best.pt, else last.pt). ONNX uses "
            "the dynamo-based torch.onnx.export; with --dynamic one file is correct at "
            "every batch size and every H, W >= 1. The model is checked with onnx.checker "
            "and carries its preprocessing (mean/std), class names and palette as metadata."
        ),
    )
    parser.add_argument("checkpoint", help="checkpoint file or run directory")
    parser.add_argument("--format", default="onnx", choices=sorted(EXPORTERS),
                        help="output format (default onnx)")
    parser.add_argument("-o", "--output", required=True, help="file to write")
    parser.add_argument("--dynamic", action="store_true",
                        help="symbolic batch, height and width (else batch 1 at --size)")
    parser.add_argument("--size", type=dims, default=DEFAULT_EXPORT_SIZE,
                        help=f"H,W of the example input traced (default {size})")
    parser.add_argument("--opset", type=int, default=None,
                        help="ONNX opset version (default: the exporter's)")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="static int8 quantization (QDQ), calibrated on --calibrate")
    parser.add_argument("--calibrate", metavar="DATA", default=None,
                        help="dataset whose images calibrate int8 (voc:, folder:, synth: ROOT)")
    parser.add_argument("--calibration-split", default="train",
                        help="split of --calibrate to read (default train)")
    parser.add_argument("--calibration-images", type=int, default=16,
                        help="images read for calibration (default 16)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def run(args: Any) -> int:
    from fcnkit.engine.export import export_checkpoint
    from fcnkit.errors import InputError

    size = args.size if isinstance(args.size, tuple) else (args.size, args.size)
    if len(size) != 2 or min(size) < 1:
        raise InputError(f"--size must be H,W with positive integers, got {args.size!r}")
    if args.calibration_images < 1:
        raise InputError(f"--calibration-images must be >= 1, got {args.calibration_images}")
    options: dict[str, Any] = {"dynamic": args.dynamic, "opset": args.opset, "size": size}
    if args.quantize or args.calibrate:
        options.update(quantize=args.quantize, calibrate=args.calibrate,
                       calibration_split=args.calibration_split,
                       calibration_images=args.calibration_images)
    report = export_checkpoint(args.checkpoint, args.output, format=args.format, **options)
    if args.json:
        print_json(report)
        return 0
    print(format_table([[k, v] for k, v in report.items()], ["field", "value"]))
    return 0
