"""``fcnkit demo``: synthetic data → train an FCN-8s on the CPU → evaluate → pictures.

The recipe and the dataset cache live in the library (:func:`fcnkit.demo.run_demo`,
:func:`fcnkit.data.cache.ensure_dataset`); this module parses and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fcnkit.cli._common import (
    PRECISION_HELP,
    check_not_under_file,
    format_table,
    print_json,
    ranged,
)
from fcnkit.runtime.precision import PRECISIONS


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train and evaluate an FCN-8s on the embedded synthetic dataset (CPU)",
        description=(
            "Generate the synthetic dataset in a cache directory (once), train an FCN-8s "
            "(ResNet-18 backbone, from scratch) on the CPU, evaluate it and write a run "
            "directory: best.pt/last.pt, metrics.json, curves.png, confusion.png, "
            "prediction overlays and report.html (fcnkit report). --quick gives a first look "
            "in about a minute."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="tiny run (about a minute)")
    parser.add_argument("--out", help="run directory (default runs/demo or runs/demo-quick)")
    parser.add_argument(
        "--cache", help="dataset cache (default $FCNKIT_CACHE or ~/.cache/fcnkit)"
    )
    parser.add_argument("--seed", type=ranged("seed"), default=0,
                        help="training seed (default 0)")
    parser.add_argument("--workers", type=ranged("workers"), default=0,
                        help="data loader workers (default 0: the images are small)")
    parser.add_argument("--threads", type=ranged("threads"),
                        help="torch threads (default: all cores; use 1 on a busy machine)")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help=f"training precision: {PRECISION_HELP} (default auto)")
    parser.add_argument(
        "--task", choices=("limbs", "objects"), default="limbs",
        help="synthetic task (default limbs: the class is read from a body's stripe "
        "orientation, thin limbs from local edges, so pixel classifiers fail where the "
        "FCN does not). objects: the older task, on which a 5x5-patch classifier scores "
        "as well as the FCN")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=run)


def _score(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"


def run(args: argparse.Namespace) -> int:
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.demo import run_demo

    def on_dataset(directory: Path, generated: bool) -> None:
        if not args.json:
            print(f"fcnkit demo: dataset {directory} ({'generated' if generated else 'cached'})",
                  flush=True)

    for option, directory in (("--out", args.out), ("--cache", args.cache)):
        if directory is not None:  # before the dataset is generated or a model trained
            check_not_under_file(directory, option, directory=True)
    summary = run_demo(quick=args.quick, out=args.out, cache=args.cache, seed=args.seed,
                       workers=args.workers, threads=args.threads, precision=args.precision,
                       progress=not args.no_progress, on_dataset=on_dataset,
                       task=args.task)
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.web.report import write_report

    report = write_report([summary["run_dir"]], Path(summary["run_dir"]) / "report.html")
    summary["files"]["report"] = report["path"]
    if args.json:
        print_json(summary)
        return 0
    rows = [[name, value] for name, value in summary["iou"].items()]
    print(format_table(rows, ["class", "IoU"]))
    print()
    print(format_table(
        [[k, summary[k]] for k in ("miou", "pixel_acc", "mean_acc", "fwiou")]
        + [["best_epoch", f"{summary['best_epoch']}/{summary['epochs']}"],
           ["train_time_s", summary["train_time_s"]]],
        ["metric", "value"],
    ))
    base = summary.get("baselines")
    if base:
        print()
        print(format_table(
            [["FCN-8s", _score(summary["miou"])],
             ["5x5-patch logistic regression", _score(base["patch5"]["miou"])],
             ["colour-only logistic regression", _score(base["colour"]["miou"])],
             ["best constant class", _score(base["constant"]["miou"])]],
            ["val mIoU on the same data", "value"]))
    files = summary["files"]
    print(f"\nrun directory {summary['run_dir']}: best.pt, last.pt, metrics.json, "
          f"metrics.jsonl, curves.png, confusion.png, predictions/ "
          f"({len(files['predictions'])} files)")
    print(f"report: {files['report']} (open it in a browser; it works offline)")
    print(f"next: fcnkit eval --checkpoint {files['best']} --data voc:{summary['dataset']}")
    return 0
