"""``fcnkit export``: a checkpoint (or foreign weights) out as ONNX or safetensors.

Examples::

    fcnkit export runs/demo/best.pt --format onnx --dynamic -o model.onnx
    fcnkit export runs/demo --dynamic --quantize int8 --calibrate ~/.cache/fcnkit/synth -o int8.onnx
    fcnkit export runs/demo --dynamic --onnx-output coarse -o coarse.onnx
    fcnkit export runs/demo/best.pt --format safetensors
    fcnkit export fcn8s_from_caffe.pth --model fcn8s --option faithful=true \\
        --format safetensors -o fcn8s-caffe.safetensors

Run an ONNX file with ``fcnkit predict/eval --checkpoint model.onnx --backend onnxruntime``;
a ``.safetensors`` file opens wherever a checkpoint does (eval, predict, ``--init-from``,
``build_model(weights=...)``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from fcnkit.cli._common import (
    check_not_under_file,
    format_table,
    int_in,
    print_json,
    size_pair,
)
from fcnkit.constants import MAX_CLASSES
from fcnkit.errors import InputError
from fcnkit.limits import MAX_EXPORT_TRACE_SIZE

NAME = "export"
FORMATS = ("onnx", "safetensors")  # fcnkit.inference.export.EXPORTERS (checked by a test)
#: --onnx-output choices: fcnkit.inference.export.ONNX_OUTPUTS (checked by a test).
ONNX_OUTPUT_CHOICES = ("logits", "coarse")


def _option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; true/false become booleans and integers ints."""
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE like faithful=true, got {text!r}")
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return key.strip(), lowered == "true"
    if lowered.lstrip("-").isdigit():
        return key.strip(), int(lowered)
    return key.strip(), value.strip()


def _options(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The ``--option`` pairs as a dict; a key given twice is refused (one would be lost)."""
    options: dict[str, Any] = {}
    for key, value in pairs:
        if key in options:
            raise InputError(f"--option {key}= is given twice ({options[key]!r} and "
                             f"{value!r}); keep one")
        options[key] = value
    return options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="export a checkpoint to ONNX (dynamic sizes, optional int8) or safetensors",
        description=(
            "Export a checkpoint (file, or run directory: best.pt, else last.pt). ONNX uses "
            "the dynamo-based torch.onnx.export; with --dynamic one file is correct at "
            "every batch size and every H, W >= 1; it is checked with onnx.checker and "
            "carries its preprocessing, class names and palette as metadata. safetensors "
            "writes the weights with the model config, classes, palette and preprocessing "
            "as metadata. With --model, SOURCE may be torchvision or pytorch-fcn weights, "
            "mapped into that fcnkit model."
        ),
    )
    parser.add_argument("checkpoint", metavar="SOURCE",
                        help="checkpoint file, run directory, or (with --model) weights")
    parser.add_argument("--format", default=None, choices=FORMATS,
                        help="output format (default: from the -o suffix, else onnx)")
    parser.add_argument("-o", "--output", "--out", dest="output", default=None,
                        help="file to write (default: SOURCE with the format's suffix)")
    onnx = parser.add_argument_group("onnx")
    onnx.add_argument("--dynamic", action="store_true",
                      help="symbolic batch, height and width (else batch 1 at --size)")
    onnx.add_argument("--size", type=size_pair(MAX_EXPORT_TRACE_SIZE), default=None,
                      help="H,W of the example input traced (default 64,96; at most "
                      f"{MAX_EXPORT_TRACE_SIZE} per side: with --dynamic the graph is right at "
                      "every size, so a small trace is enough)")
    onnx.add_argument("--opset", type=int_in(7, 100), default=None,
                      help="ONNX opset version (default: the exporter's)")
    onnx.add_argument("--onnx-output", choices=ONNX_OUTPUT_CHOICES, default=None,
                      help="what the graph outputs: logits (default; full resolution) or "
                      "coarse (coarse_scores before the last bilinear upsampling, which the "
                      "metadata records with its crop: fcnkit eval/predict then compute "
                      "labels exactly from them; only for models with upsample bilinear or "
                      "interpolate)")
    onnx.add_argument("--quantize", choices=["int8"], default=None,
                      help="static int8 quantization (QDQ), calibrated on --calibrate")
    onnx.add_argument("--calibrate", metavar="DATA", default=None,
                      help="dataset whose images calibrate int8 (voc:, folder:, synth: ROOT)")
    onnx.add_argument("--calibration-split", default="train",
                      help="split of --calibrate to read (default train)")
    onnx.add_argument("--calibration-images", type=int_in(1, 100_000), default=16,
                      help="images read for calibration (default 16)")
    foreign = parser.add_argument_group("foreign weights")
    foreign.add_argument("--model", help="fcnkit model for foreign weights (e.g. fcn8s)")
    foreign.add_argument("--num-classes", type=int_in(1, MAX_CLASSES), default=21,
                         help="classes of the foreign weights (default 21)")
    foreign.add_argument("--option", type=_option, action="append", default=[],
                         metavar="KEY=VALUE",
                         help="build_model option for --model (repeatable)")
    parser.add_argument("--force", action="store_true",
                        help="write the output even when it is SOURCE or a run's checkpoint, "
                        "metrics.jsonl or config.json (refused otherwise)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def run(args: Any) -> int:
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.inference.export import DEFAULT_EXPORT_SIZE, export_checkpoint, export_format

    options: dict[str, Any] = {}
    if args.output is not None:
        check_not_under_file(args.output, "--output")
        if args.output.endswith(("/", os.sep)):  # Path() would drop the slash: a file
            raise InputError(f"--output {args.output} names a directory; pass a file such as "
                             f"{Path(args.output) / ('model.' + (args.format or 'onnx'))}")
    args.format = export_format(args.output, args.format)  # -o x.safetensors names it
    if args.format == "onnx":
        size = DEFAULT_EXPORT_SIZE if args.size is None else args.size
        options = {"dynamic": args.dynamic, "opset": args.opset, "size": size,
                   "onnx_output": args.onnx_output or "logits"}
        if args.quantize or args.calibrate:
            options.update(quantize=args.quantize, calibrate=args.calibrate,
                           calibration_split=args.calibration_split,
                           calibration_images=args.calibration_images)
    else:
        onnx_only = [flag for flag, given in (
            ("--dynamic", args.dynamic), ("--size", args.size is not None),
            ("--opset", args.opset is not None), ("--quantize", args.quantize),
            ("--onnx-output", args.onnx_output),
            ("--calibrate", args.calibrate)) if given]
        if onnx_only:
            raise InputError(f"{', '.join(onnx_only)} apply to --format onnx only")
    report = export_checkpoint(args.checkpoint, args.output, format=args.format,
                               model=args.model, num_classes=args.num_classes,
                               model_options=_options(args.option), force=args.force,
                               **options)
    if args.json:
        print_json(report)
        return 0
    rows = [[k, v] for k, v in report.items() if k != "model_config"]
    print(format_table(rows, ["field", "value"]))
    return 0
