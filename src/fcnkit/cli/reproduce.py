"""``fcnkit reproduce CLAIM``: run one claim of the FCN material and give a verdict.

Examples::

    fcnkit reproduce matrix
    fcnkit reproduce receptive-fields --json
    fcnkit reproduce skips --quick --out runs/reproduce/skips
    fcnkit reproduce skips --data voc:/data/VOCdevkit/VOC2012 --seeds 3
    fcnkit reproduce all --quick --out runs/reproduce
    fcnkit reproduce table docs/results --page docs/reproductions.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fcnkit.atomic import write_text_atomic
from fcnkit.cli._common import int_in, print_json, ranged
from fcnkit.errors import InputError
from fcnkit.outputs import is_run_directory
from fcnkit.reproduce import CLAIMS, ReproduceConfig, run_claim
from fcnkit.reproduce.summary import render_page, render_result, run_all


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="reproduce a claim (skips, upsampling, gridding, matrix, receptive-fields, "
        "padding; all; table)",
        description="Run one claim of the FCN material as a measured experiment and write "
        "results.json, results.md (clauses and verdicts) and figures into --out. Training "
        "claims train every variant with the same data, budget and seeds (on the claim's "
        "synthetic task unless --task or --data is given); each clause is a paired "
        "comparison over seeds with one-sided 95 % Student-t bounds and its power. 'all' "
        "runs every claim and writes summary.md and summary.html; 'table DIR' renders "
        "recorded results files (docs/results) as the markdown of docs/reproductions.md.",
    )
    parser.add_argument("claim", choices=[*CLAIMS, "all", "table"],
                        help="the claim to reproduce, 'all', or 'table'")
    parser.add_argument("results_dir", nargs="?",
                        help="table only: the directory of results files (e.g. docs/results)")
    parser.add_argument("--page", help="table only: rewrite this page's generated blocks")
    parser.add_argument("--quick", action="store_true",
                        help="short protocol: fewer seeds and epochs")
    parser.add_argument("--seeds", type=int,
                        help="number of seeds (default 2 quick; full: the claim's own "
                        "design: skips 18, upsampling 64, gridding 5, padding 6)")
    parser.add_argument("--data", help="dataset spec (default: the claim's generated task)")
    parser.add_argument("--task", help="the synthetic task to generate instead of the "
                        "claim's own (objects, shapes, limbs, regions; skips and upsampling: "
                        "limbs; gridding: regions; --data overrides)")
    parser.add_argument("--out", help="output directory (default runs/reproduce/CLAIM, "
                        "runs/reproduce for all)")
    parser.add_argument("--boundary-width", type=int, default=3,
                        help="boundary band d in pixels for trimap / Boundary IoU (default 3)")
    parser.add_argument("--threads", type=ranged("threads"),
                        help="torch threads of each training (default: the usable CPUs "
                        "shared out among --jobs)")
    parser.add_argument("--jobs", type=int_in(1, 1024),
                        help="trainings run at once, each in its own process (default: one "
                        "per usable CPU, divided by --threads, at most 8; small networks use "
                        "2 cores better as two 1-thread trainings than as one 2-thread "
                        "training)")
    parser.add_argument("--force", action="store_true",
                        help="write into --out even when it is a training run directory "
                        "(refused otherwise: its results would mix with the run's state)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.claim == "table":
        return _table(args)
    if args.results_dir is not None or args.page is not None:
        raise InputError(f"reproduce {args.claim}: a results directory and --page belong to "
                         "'fcnkit reproduce table DIR'")
    default_out = "runs/reproduce" if args.claim == "all" else f"runs/reproduce/{args.claim}"
    if args.out and not args.force:
        if is_run_directory(args.out):
            raise InputError(f"--out {args.out} is a training run directory; choose another "
                             "directory, or pass --force to write into it")
    config = ReproduceConfig(quick=args.quick, seeds=args.seeds, data=args.data,
                             out=args.out or default_out, threads=args.threads,
                             jobs=args.jobs,
                             boundary_width=args.boundary_width, task=args.task,
                             extra={"task": args.task} if args.task else {})
    if args.claim == "all":
        results = run_all(config)
        if args.json:
            print_json({k: v for k, v in results.items() if k != "table"})
            return 0
        print(results["table"], end="")
        print(f"written: {', '.join(results['files'].values())}")
        return 0
    results = run_claim(args.claim, config)
    if args.json:
        print_json({k: v for k, v in results.items() if k != "table"})
        return 0
    print(results["table"], end="")
    print(f"verdict: {results['verdict']} — {results['verdict_reason']}")
    print(f"written: {', '.join(results['files'].values())}")
    return 0


def _table(args: argparse.Namespace) -> int:
    if args.results_dir is None:
        raise InputError("reproduce table: name the directory of results files, e.g. "
                         "'fcnkit reproduce table docs/results'")
    directory = Path(args.results_dir)
    if not directory.is_dir():
        raise InputError(f"reproduce table: {directory} is not a directory of results files")
    if args.page:
        page = Path(args.page)
        if not page.is_file():
            raise InputError(f"--page {page}: no such file")
        before = page.read_text()
        after = render_page(before, directory)
        if after != before:
            write_text_atomic(page, after)
        report = {"page": str(page), "changed": after != before}
        if args.json:
            print_json(report)
        else:
            print(f"{page}: {'rewritten' if report['changed'] else 'up to date'}")
        return 0
    files = sorted(directory.glob("*.json"))
    rendered = {f.name: render_result(json.loads(f.read_text())) for f in files}
    if args.json:
        print_json(rendered)
        return 0
    for name, text in rendered.items():
        print(f"## {name}\n\n{text}")
    return 0
