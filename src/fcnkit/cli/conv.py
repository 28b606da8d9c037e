"""``fcnkit conv``: output size of a convolution, transposed convolution or pooling layer.

Examples::

    fcnkit conv --size 5 --kernel 3 --stride 2 --padding 1
    fcnkit conv --size 375,500 --kernel 3 --json
    fcnkit conv --size 3 --kernel 3 --stride 2 --padding 1 --transposed --output-padding 1
    fcnkit conv --size 7 --kernel 2 --stride 2 --pool --ceil-mode
    fcnkit conv --size 500 --kernel 3 --stride 2 --padding same --convention tensorflow
"""

from __future__ import annotations

import argparse
from typing import Any

from fcnkit.arith import sizes
from fcnkit.arith.layer import describe_layer
from fcnkit.cli._common import dims, format_table, print_json

NAME = "conv"


def _padding(text: str) -> int | tuple[int, ...] | str:
    """argparse ``type=`` for --padding: an int, an H,W pair, or 'same' / 'valid'."""
    if text.strip().lower() in ("same", "valid"):
        return text.strip().lower()
    try:
        return dims(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected an integer, an H,W pair, 'same' or 'valid', got {text!r}"
        ) from None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="output size of a convolution / transposed convolution / pooling layer",
        description=(
            "Print the output size and effective kernel of one layer. For a direct "
            "convolution also print the transposed convolution that inverts its shape "
            "(kernel, stride, padding and the output_padding recovering the input size). "
            "Sizes and geometry accept H,W pairs such as 375,500."
        ),
    )
    parser.add_argument("--size", type=dims, required=True, help="input size: N or H,W")
    parser.add_argument("--kernel", type=dims, required=True, help="kernel size: K or KH,KW")
    parser.add_argument(
        "--stride", type=dims, default=None, help="stride (default 1; kernel for --pool)"
    )
    parser.add_argument(
        "--padding",
        type=_padding,
        default=0,
        help="padding on each side: P, PH,PW, or TensorFlow's 'same' / 'valid' (default 0)",
    )
    parser.add_argument("--dilation", type=dims, default=1, help="dilation (default 1)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--transposed", action="store_true", help="a transposed convolution (ConvTranspose2d)"
    )
    kind.add_argument("--pool", action="store_true", help="a pooling layer (MaxPool2d/AvgPool2d)")
    parser.add_argument(
        "--output-padding",
        type=dims,
        default=0,
        help="extra bottom/right units of a transposed convolution (default 0)",
    )
    parser.add_argument(
        "--ceil-mode", action="store_true", help="pooling rounds up (PyTorch ceil_mode=True)"
    )
    parser.add_argument(
        "--convention",
        choices=sizes.CONVENTIONS,
        default="pytorch",
        help="size rules: pytorch (default), caffe (ceil pooling, no output_padding), "
        "tensorflow (padding same/valid)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    kind = "pool" if args.pool else "conv_transpose" if args.transposed else "conv"
    report = describe_layer(
        size=args.size, kernel=args.kernel, stride=args.stride, padding=args.padding,
        dilation=args.dilation, kind=kind, output_padding=args.output_padding,
        ceil_mode=args.ceil_mode, convention=args.convention,
    )
    if args.json:
        print_json(report)
        return 0
    rows: list[list[Any]] = []
    names = {"conv": "convolution", "conv_transpose": "transposed convolution", "pool": "pooling"}
    rows.append(["layer", f"{names[report['layer']]} ({report['convention']})"])
    for key in ("input_size", "kernel", "stride", "padding", "dilation", "output_padding"):
        if key in report:
            rows.append([key.replace("_", " "), _show(report[key])])
    if "ceil_mode" in report:
        rows.append(["ceil mode", str(report["ceil_mode"])])
    rows.append(["effective kernel", _show(report["effective_kernel"])])
    rows.append(["output size", _show(report["output_size"])])
    if "same_padding" in report:
        pads = ", ".join(f"{b}+{a}" for b, a in report["same_padding"])
        rows.append(["SAME padding (before+after)", pads])
    inverse = report.get("inverse")
    if inverse is not None:
        module = "ConvTranspose2d" if inverse["layer"] == "conv_transpose" else "Conv2d"
        label = f"inverse {module}"
        geometry = (
            f"k={_show(inverse['kernel'])} s={_show(inverse['stride'])} "
            f"p={_show(inverse['padding'])} d={_show(inverse['dilation'])}"
        )
        if "output_padding" in inverse:
            geometry += f" output_padding={_show(inverse['output_padding'])}"
        rows.append([label, geometry])
        rows.append(["  -> size", _show(inverse["output_size"])])
    direct = report.get("transposed_as_direct")
    if direct is not None:
        rows.append(
            [
                "transpose as direct conv",
                f"insert {_show(direct['zeros_inserted'])} zeros, pad "
                f"{_show(direct['padding_before'])} before / {_show(direct['padding_after'])} "
                "after, stride 1, flipped kernel",
            ]
        )
    print(format_table(rows, ["quantity", "value"]))
    if report.get("note"):
        print(f"note: {report['note']}")
    return 0


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
