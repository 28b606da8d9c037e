"""``fcnkit models``: the model family with parameters, GFLOPs, output stride, receptive field.

Examples::

    fcnkit models                          # every model at 320x480 (d2l's VOC crop)
    fcnkit models --size 500,375 --json
    fcnkit models --only fcn8s,fcn_dilated --no-rf
"""

from __future__ import annotations

import argparse
from typing import Any

from fcnkit.cli._common import format_table, int_in, print_json, size_pair
from fcnkit.constants import MAX_CLASSES
from fcnkit.limits import MAX_INPUT_SIZE

NAME = "models"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="table of the FCN models: parameters, GFLOPs, output stride, receptive field",
        description=(
            "Build every model (on the meta device: no weights, nothing downloads) and report "
            "its parameters "
            "(trainable and frozen), GFLOPs of one forward pass at --size (torch "
            "FlopCounterMode: 2 per multiply-add; interpolation counts 0), output stride and "
            "receptive field of an output pixel in input pixels (traced by fcnkit.analysis). "
            "Inputs are ImageNet-normalised RGB images; outputs logits at the input size."
        ),
    )
    parser.add_argument("--size", type=size_pair(MAX_INPUT_SIZE), default=(320, 480),
                        help="input size H,W for GFLOPs and receptive field (320,480)")
    parser.add_argument("--num-classes", type=int_in(1, MAX_CLASSES), default=21,
                        help="classes (default 21)")
    parser.add_argument("--only", default=None, metavar="NAMES",
                        help="comma-separated model names to keep (default: all)")
    parser.add_argument("--no-rf", action="store_true",
                        help="skip the receptive-field trace (faster)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.analysis import TABLE_VARIANTS, describe_options, model_summary
    from fcnkit.errors import InputError
    from fcnkit.models import list_models

    size = args.size if isinstance(args.size, tuple) else (args.size, args.size)
    variants = list(TABLE_VARIANTS)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in list_models()]
        if unknown:
            raise InputError(f"--only: unknown model {', '.join(unknown)}; choose from "
                             f"{', '.join(list_models())}")
        variants = [v for v in variants if v[0] in wanted]
    rows = [
        model_summary(name, size, num_classes=args.num_classes,
                      receptive_field=not args.no_rf, **options)
        for name, options in variants
    ]
    if args.json:
        print_json({"size": list(size), "num_classes": args.num_classes, "models": rows})
        return 0
    table = [
        [r["model"], describe_options(r["options"]) or "-", round(r["params"] / 1e6, 2),
         round((r["params"] - r["trainable_params"]) / 1e6, 3), round(r["gflops"], 2),
         r["output_stride"] or "-", r["receptive_field"] if r["receptive_field"] else "-"]
        for r in rows
    ]
    print(f"input {size[0]}x{size[1]}, {args.num_classes} classes")
    print(format_table(table, ["model", "options", "Mparams", "Mfrozen", "GFLOPs", "stride",
                               "RF"]))
    return 0
