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


def _listify(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def describe_layer(args: argparse.Namespace) -> dict[str, Any]:
    """Compute the report for the parsed arguments (all arithmetic is fcnkit.arith's)."""
    layer = "pool" if args.pool else "conv_transpose" if args.transposed else "conv"
    padding = args.padding
    convention = args.convention
    if args.output_padding != 0 and layer != "conv_transpose":
        raise ValueError("--output-padding only applies with --transposed")
    if args.ceil_mode and layer != "pool":
        raise ValueError("--ceil-mode only applies with --pool")

    stride = args.stride
    if stride is None:
        stride = args.kernel if layer == "pool" else 1

    report: dict[str, Any] = {
        "layer": layer,
        "convention": convention,
        "input_size": _listify(args.size),
        "kernel": _listify(args.kernel),
        "stride": _listify(stride),
        "padding": _listify(padding),
        "dilation": _listify(args.dilation),
    }
    report["effective_kernel"] = _listify(sizes.effective_kernel(args.kernel, args.dilation))
    geometry = (args.size, args.kernel, stride, padding, args.dilation)

    if layer == "pool":
        out = sizes.pool_output_size(
            *geometry, ceil_mode=args.ceil_mode, convention=convention
        )
        if convention != "tensorflow":
            report["ceil_mode"] = bool(args.ceil_mode) or convention == "caffe"
        report["output_size"] = _listify(out)
        return report

    if layer == "conv_transpose":
        out = sizes.conv_transpose_output_size(
            *geometry, output_padding=args.output_padding, convention=convention
        )
        report["output_padding"] = _listify(args.output_padding)
        report["output_size"] = _listify(out)
        if not isinstance(padding, str):
            # The direct convolution with the same geometry maps the output back.
            back = sizes.conv_output_size(out, args.kernel, stride, padding, args.dilation)
            report["inverse"] = {
                "layer": "conv",
                "kernel": _listify(args.kernel),
                "stride": _listify(stride),
                "padding": _listify(padding),
                "dilation": _listify(args.dilation),
                "output_size": _listify(back),
            }
        return report

    out = sizes.conv_output_size(*geometry, convention=convention)
    report["output_size"] = _listify(out)
    symmetric = padding
    if padding == "valid":
        symmetric = 0
    elif padding == "same":
        pairs = sizes.same_padding(args.kernel, stride, args.dilation, size=args.size)
        pair_list = [pairs] if isinstance(pairs[0], int) else list(pairs)
        report["same_padding"] = [list(p) for p in pair_list]
        if all(before == after for before, after in pair_list):
            befores = tuple(before for before, _ in pair_list)
            symmetric = befores[0] if isinstance(pairs[0], int) else befores
        else:
            symmetric = None
    if symmetric is None:
        report["inverse"] = None
        report["note"] = (
            "TensorFlow SAME padding is asymmetric here; no symmetric ConvTranspose2d "
            "inverts it (pad explicitly, or use tf.nn.conv2d_transpose with output_shape)"
        )
        return report
    try:
        eq = sizes.transposed_equivalent(args.size, args.kernel, stride, symmetric, args.dilation)
    except ValueError:
        # Only Caffe's truncating division gets here: its kernel overhangs the input.
        report["inverse"] = None
        report["note"] = (
            "the kernel overhangs the padded input (Caffe's truncating division still "
            "gives an output); PyTorch refuses this geometry, so no inverse is given"
        )
        return report
    recovered = sizes.conv_transpose_output_size(
        out, args.kernel, stride, symmetric, args.dilation, eq.extra
    )
    report["inverse"] = {
        "layer": "conv_transpose",
        "kernel": _listify(args.kernel),
        "stride": _listify(stride),
        "padding": _listify(symmetric),
        "dilation": _listify(args.dilation),
        "output_padding": _listify(eq.extra),
        "output_size": _listify(recovered),
    }
    report["transposed_as_direct"] = {
        "zeros_inserted": _listify(eq.zeros_inserted),
        "padding_before": _listify(eq.padding_before),
        "padding_after": _listify(eq.padding_after),
        "stride": 1,
        "kernel_flipped": True,
        "stretched_size": _listify(eq.stretched_size),
        "padded_size": _listify(eq.padded_size),
    }
    if convention == "caffe" and any(v != 0 for v in _as_list(eq.extra)):
        report["note"] = (
            "Caffe's Deconvolution has no output_padding: it gives the smaller size; "
            "crop or pad to reach the original"
        )
    return report


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def run(args: argparse.Namespace) -> int:
    report = describe_layer(args)
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
