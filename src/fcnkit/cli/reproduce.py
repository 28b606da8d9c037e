"""``fcnkit reproduce CLAIM``: run one claim of the FCN material and give a verdict.

Examples::

    fcnkit reproduce matrix
    fcnkit reproduce receptive-fields --json
    fcnkit reproduce skips --quick --out runs/reproduce/skips
    fcnkit reproduce skips --data voc:/data/VOCdevkit/VOC2012 --seeds 3
"""

from __future__ import annotations

import argparse
from typing import Any

from fcnkit.cli._common import print_json


def register(subparsers: Any) -> None:
    from fcnkit.reproduce import CLAIMS

    parser = subparsers.add_parser(
        "reproduce",
        help="reproduce a claim (skips, upsampling, gridding, matrix, receptive-fields, "
        "padding)",
        description="Run one claim of the FCN material as a measured experiment and write "
        "results.json, results.md (table and verdict) and figures into --out. Training "
        "claims train every variant with the same data, budget and seeds (on the shapes "
        "task unless --data is given) and report mean ± std over seeds.",
    )
    parser.add_argument("claim", choices=list(CLAIMS), help="the claim to reproduce")
    parser.add_argument("--quick", action="store_true",
                        help="short protocol: fewer seeds and epochs (<= 10 min on 2 cores)")
    parser.add_argument("--seeds", type=int, help="number of seeds (default 2 quick, 3 full)")
    parser.add_argument("--data", help="dataset spec (default: the generated shapes task)")
    parser.add_argument("--out", help="output directory (default runs/reproduce/CLAIM)")
    parser.add_argument("--boundary-width", type=int, default=3,
                        help="boundary band d in pixels for trimap / Boundary IoU (default 3)")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fcnkit.reproduce import ReproduceConfig, run_claim

    config = ReproduceConfig(quick=args.quick, seeds=args.seeds, data=args.data,
                             out=args.out or f"runs/reproduce/{args.claim}",
                             threads=args.threads, boundary_width=args.boundary_width)
    results = run_claim(args.claim, config)
    if args.json:
        print_json({k: v for k, v in results.items() if k != "table"})
        return 0
    print(results["table"], end="")
    print(f"verdict: {results['verdict']} — {results['verdict_reason']}")
    print(f"written: {', '.join(results['files'].values())}")
    return 0
