"""``fcnkit export``: a checkpoint (or foreign weights) out as ``.safetensors`` + metadata.

Examples::

    fcnkit export runs/demo/best.pt --format safetensors
    fcnkit export fcn8s_from_caffe.pth --model fcn8s --option faithful=true \\
        --out fcn8s-caffe.safetensors
"""

from __future__ import annotations

import argparse
from typing import Any

from fcnkit.cli._common import positive_int, print_json

NAME = "export"
FORMATS = ("safetensors",)


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


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="write a checkpoint's weights and metadata as .safetensors",
        description=(
            "Write the weights of a fcnkit checkpoint (or run directory) as .safetensors "
            "with the model config, classes, palette and preprocessing as metadata; "
            "build_model(weights=...) and fcnkit eval/predict/train --init-from read it back. "
            "With --model, SOURCE may be torchvision or pytorch-fcn weights, mapped into "
            "that fcnkit model."
        ),
    )
    parser.add_argument("source", metavar="CKPT", help="checkpoint, run directory or weights")
    parser.add_argument("--format", choices=FORMATS, default="safetensors",
                        help="output format (default safetensors)")
    parser.add_argument("--out", help="output file (default: CKPT with suffix .safetensors)")
    parser.add_argument("--model", help="fcnkit model for foreign weights (e.g. fcn8s)")
    parser.add_argument("--num-classes", type=positive_int, default=21,
                        help="classes of the foreign weights (default 21)")
    parser.add_argument("--option", type=_option, action="append", default=[],
                        metavar="KEY=VALUE", help="build_model option for --model (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: Any) -> int:
    from fcnkit.engine.export_safetensors import export_weights

    result = export_weights(args.source, args.out, model=args.model,
                            num_classes=args.num_classes, options=dict(args.option))
    if args.json:
        print_json(result)
    else:
        print(f"wrote {result['path']}: {result['tensors']} tensors, model "
              f"{result['model_config'].get('name')}, preprocessing {result['preprocessing']}")
    return 0
