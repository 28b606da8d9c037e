"""``fcnkit rf``: receptive field of every layer of a model.

Examples::

    fcnkit rf vgg16                       # torchvision VGG-16 body: pool5 sees 212x212
    fcnkit rf resnet50 --size 320,480 --json
    fcnkit rf fcn8s --plot rf.png         # an fcnkit model; RF growth plot
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from typing import Any

from fcnkit.cli._common import format_table, int_in, print_json, size_pair
from fcnkit.constants import MAX_CLASSES
from fcnkit.limits import MAX_INPUT_SIZE, check_model_input
from fcnkit.viz import check_figure_path

NAME = "rf"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="receptive field, effective stride and padding of every layer of a model",
        description=(
            "Trace one forward pass of MODEL (random weights, nothing downloads) and print "
            "each layer's receptive field in input pixels, effective stride and effective "
            "padding (Araujo et al. 2019; centre of output pixel j = stride*j + (size-1)/2 "
            "- padding). MODEL is an fcnkit model (fcn8s, ...) or a torchvision classifier "
            "(vgg16, resnet50, alexnet, mobilenet_v3_large, ...: its convolutional body). "
            "Layers after global pooling depend on the whole input and are flagged."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="fcnkit or torchvision model name")
    parser.add_argument("--size", type=size_pair(MAX_INPUT_SIZE), default=224,
                        help="input size N or H,W (224)")
    parser.add_argument("--num-classes", type=int_in(1, MAX_CLASSES), default=21,
                        help="classes for fcnkit models (default 21)")
    parser.add_argument("--plot", metavar="PNG", default=None,
                        help="write a receptive-field growth plot to this PNG")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def _fmt(value: Any) -> str:
    """One per-dimension value for the table: 212, 212x100, 31/2."""
    if value is None:
        return "-"
    values = value if isinstance(value, (tuple, list)) else (value,)
    text = [str(Fraction(v)) if isinstance(v, Fraction) else str(v) for v in values]
    if len(set(text)) == 1:
        return text[0]
    return "x".join(text)


def run(args: argparse.Namespace) -> int:
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.analysis import conv_body_records, model_for_analysis, receptive_field_of

    size = args.size if isinstance(args.size, tuple) else (args.size, args.size)
    check_model_input(size, "--size")
    if args.plot:
        check_figure_path(args.plot)  # before any work: an unknown format is one line
    model = model_for_analysis(args.model, num_classes=args.num_classes)
    records = receptive_field_of(model, size)
    if getattr(model, "fcnkit_conv_body_only", False):
        records = conv_body_records(records)
    if args.plot:
        # local: import cost (matplotlib, ~1 s: loaded only when a picture is asked for)
        from fcnkit.viz.receptive import plot_receptive_field_growth

        plot_receptive_field_growth(records, args.plot,
                                    title=f"{args.model}: receptive field at {size[0]}x{size[1]}")
    final = records[-1].as_dict()
    if args.json:
        print_json({
            "model": args.model,
            "input_size": list(size),
            "layers": [r.as_dict() for r in records],
            **{k: final[k] for k in ("size", "stride", "padding", "center", "whole_input",
                                     "note")},
        })
        return 0
    rows = []
    for r in records:
        rf = f"whole ({_fmt(r.input_size)})" if r.whole_input else _fmt(r.size)
        rows.append([r.name, r.kind, "x".join(str(d) for d in r.shape[1:]), rf,
                     _fmt(r.stride), _fmt(r.padding), _fmt(r.center(0)), r.note])
    print(format_table(rows, ["layer", "kind", "output CxHxW", "RF", "stride", "padding",
                              "centre(0)", "note"]))
    if args.plot:
        print(f"wrote {args.plot}")
    return 0
