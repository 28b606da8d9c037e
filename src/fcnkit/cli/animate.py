"""``fcnkit animate``: a conv_arithmetic-style animation of one convolution.

Examples::

    fcnkit animate --size 5 --kernel 3 --stride 2 --padding 1 -o conv.gif
    fcnkit animate --size 7 --kernel 3 --dilation 2 -o dilated.gif --png
    fcnkit animate --size 3 --kernel 3 --stride 2 --padding 1 --transposed \\
        --output-padding 1 -o transposed.gif
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fcnkit.arith.sizes import as_pair
from fcnkit.arith.taps import animation_cost, tap_layout
from fcnkit.cli._common import dims, int_in, print_json
from fcnkit.errors import InputError
from fcnkit.limits import check_animation

NAME = "animate"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="animate a convolution / transposed convolution (GIF, PNG contact sheet)",
        description=(
            "Draw one frame per output position: the input grid (padding dashed, inserted "
            "zeros grey), the kernel taps on it, and the output filling in. A transposed "
            "convolution is drawn as its equivalent direct stride-1 convolution on the "
            "zero-inserted, padded input (Dumoulin & Visin)."
        ),
    )
    parser.add_argument("--size", type=dims, required=True, help="input size N or H,W")
    parser.add_argument("--kernel", type=dims, required=True, help="kernel size K or KH,KW")
    parser.add_argument("--stride", type=dims, default=1, help="stride (default 1)")
    parser.add_argument("--padding", type=dims, default=0, help="padding (default 0)")
    parser.add_argument("--dilation", type=dims, default=1, help="dilation (default 1)")
    parser.add_argument("--transposed", action="store_true",
                        help="a transposed convolution (ConvTranspose2d)")
    parser.add_argument("--output-padding", type=dims, default=0,
                        help="output_padding of a transposed convolution (default 0)")
    parser.add_argument("-o", "--output", required=True, metavar="PATH",
                        help="GIF to write (with --png and a .png PATH: only the sheet)")
    parser.add_argument("--png", action="store_true",
                        help="also write a contact sheet of all frames (PATH with .png)")
    # GIF frame delays are 16-bit counts of 10 ms (GIF89a, Graphic Control Extension).
    parser.add_argument("--frame-ms", type=int_in(10, 655_350), default=500,
                        help="frame duration, 10..655350 ms (default 500)")
    parser.add_argument("--json", action="store_true", help="print what was written as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # local: import cost (matplotlib, ~1 s: loaded only when a picture is asked for)
    from fcnkit.viz.animation import write_conv_animation

    out = Path(args.output)
    if out.suffix.lower() == ".png":
        if not args.png:
            raise InputError(f"-o {out}: a .png output needs --png (contact sheet); use .gif "
                             "for the animation")
        gif, sheet = None, out
    else:
        if out.suffix.lower() != ".gif":
            raise InputError(f"-o {out}: the animation is a GIF; name it .gif")
        gif, sheet = out, (out.with_suffix(".png") if args.png else None)
    cost = animation_cost(*(as_pair(v, name) for v, name in (
        (args.size, "--size"), (args.kernel, "--kernel"), (args.stride, "--stride"),
        (args.padding, "--padding"), (args.dilation, "--dilation"))),
        args.transposed, as_pair(args.output_padding, "--output-padding"))
    if cost is not None:  # invalid geometry: tap_layout below says what is wrong
        check_animation(*cost)
    geom = tap_layout(args.size, args.kernel, args.stride, args.padding, args.dilation,
                      args.transposed, args.output_padding)
    frames = write_conv_animation(geom, gif, sheet, frame_ms=args.frame_ms)
    written = [str(p) for p in (gif, sheet) if p is not None]
    if args.json:
        print_json({"frames": frames, "output_shape": list(geom.output_shape),
                    "grid_shape": list(geom.cells.shape), "written": written})
    else:
        oh, ow = geom.output_shape
        print(f"{frames} frames ({oh}x{ow} output positions); wrote {', '.join(written)}")
    return 0
