"""``fcnkit gridding``: does a stack of dilated convolutions leave holes (HDC check)?

Examples::

    fcnkit gridding 1,2,5                 # no holes: Wang et al.'s HDC example
    fcnkit gridding 2,4,8 --plot grid.png # gridding: only every other pixel is used
    fcnkit gridding 1,2,9 --json
    fcnkit gridding 1,2,3 --suggest 6,67  # also suggest 6-layer schedules reaching RF 67
"""

from __future__ import annotations

import argparse
from typing import Any

from fcnkit.arith.gridding import hdc_check, suggest_rates
from fcnkit.cli._common import dims, format_table, int_in, int_list, print_json
from fcnkit.errors import InputError
from fcnkit.limits import check_suggestion_search
from fcnkit.viz import check_figure_path

NAME = "gridding"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="gridding check of a dilated-convolution stack (HDC rules, holes, heat map)",
        description=(
            "For stride-1 KxK convolutions with dilation RATES (first = closest to the "
            "input), count how many paths reach each input pixel of one output pixel's "
            "receptive field; 0 = a hole (the gridding effect). Also report Wang et al.'s "
            "HDC quantities (M values, M_2 <= K, common factor) next to the exact verdict."
        ),
    )
    parser.add_argument("rates", metavar="RATES", type=int_list,
                        help="comma-separated dilation rates, e.g. 1,2,5")
    parser.add_argument("--kernel", type=int_in(1, 10**6), default=3,
                        help="kernel size K (default 3)")
    parser.add_argument("--plot", metavar="PNG", default=None,
                        help="write the path-count heat map to this PNG")
    parser.add_argument("--suggest", metavar="LAYERS,RF", type=dims, default=None,
                        help="also list hole-free sawtooth schedules of LAYERS layers "
                        "reaching receptive field RF")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.plot:
        check_figure_path(args.plot)  # before any work: an unknown format is one line
    # hdc_check refuses a receptive field above fcnkit.limits.MAX_RECEPTIVE_FIELD itself.
    report = hdc_check(args.rates, kernel_size=args.kernel)
    suggestions = None
    if args.suggest is not None:
        if not isinstance(args.suggest, tuple) or len(args.suggest) != 2:
            raise InputError("--suggest takes LAYERS,RF, e.g. --suggest 6,67")
        if min(args.suggest) < 1:
            raise InputError(f"--suggest {args.suggest[0]},{args.suggest[1]}: LAYERS and RF "
                             "must be at least 1, e.g. --suggest 6,67")
        check_suggestion_search(*args.suggest)
        suggestions = suggest_rates(args.suggest[0], args.suggest[1], kernel_size=args.kernel)
    if args.plot:
        # local: import cost (matplotlib, ~1 s: loaded only when a picture is asked for)
        from fcnkit.viz.gridding import plot_dilation_coverage

        verdict = f"{report.holes} holes" if report.grids else "no holes"
        rates = ",".join(map(str, report.rates))
        plot_dilation_coverage(report.coverage, args.plot,
                               title=f"rates {rates}, K={report.kernel_size}: {verdict}")
    verdict = "gridding" if report.grids else "no gridding"
    if args.json:
        out = {"verdict": verdict, **report.as_dict(include_coverage=report.receptive_field
                                                     <= 64)}
        if suggestions is not None:
            out["suggestions"] = [
                {"rates": list(s.rates), "receptive_field": s.receptive_field,
                 "m_rule_ok": s.m_rule_ok, "M": s.M} for s in suggestions
            ]
        print_json(out)
        return 0
    k = report.kernel_size
    rows: list[list[Any]] = [
        ["verdict", verdict],
        ["receptive field", f"{report.receptive_field}x{report.receptive_field}"],
        ["holes", f"{report.holes} of {report.receptive_field ** 2} "
                  f"({report.holes_1d} per axis)"],
        ["M (Wang et al.)", ",".join(map(str, report.M))],
        [f"M_2 <= K={k}", "yes" if report.m_rule_ok else "no"],
        ["common factor", report.common_factor],
    ]
    print(format_table(rows, ["rates " + ",".join(map(str, report.rates)), "value"]))
    if report.receptive_field <= 31:
        print()
        print("paths per input pixel (. = hole):")
        width = len(str(int(report.coverage.max())))
        for row in report.coverage:
            print(" ".join(str(int(v)).rjust(width) if v else ".".rjust(width) for v in row))
    if suggestions is not None:
        print()
        if suggestions:
            print(format_table(
                [[",".join(map(str, s.rates)), s.receptive_field,
                  "yes" if s.m_rule_ok else "no"] for s in suggestions],
                ["suggested rates", "RF", "M_2 <= K"],
            ))
        else:
            print("no hole-free sawtooth schedule reaches that receptive field")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0
