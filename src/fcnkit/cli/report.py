"""``fcnkit report``: a training run (or several) as one self-contained HTML page.

Examples::

    fcnkit report runs/fcn8s                      # writes runs/fcn8s/report.html
    fcnkit report runs/a runs/b -o compare.html   # two runs side by side
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fcnkit.cli._common import device, print_json
from fcnkit.errors import warn

NAME = "report"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="a run directory as one self-contained report.html (curves, IoU, gallery)",
        description=(
            "Write one HTML file that opens offline: the run's config, interactive training "
            "curves (hover for values), the per-class IoU / accuracy table, the confusion "
            "matrix, a gallery of validation predictions (image | ground truth | prediction "
            "| errors, computed with best.pt) and the checkpoint's facts. Several RUN_DIRs "
            "are compared: curves overlaid, metrics side by side."
        ),
    )
    parser.add_argument("runs", metavar="RUN_DIR", nargs="+", help="training run directories")
    parser.add_argument("-o", "--output", metavar="HTML", default=None,
                        help="file to write (default RUN_DIR/report.html for one run, "
                        "report.html for several)")
    parser.add_argument("--gallery", type=int, default=None, metavar="N",
                        help="validation images in the gallery (default 4; 0: none)")
    parser.add_argument("--device", type=device, default="cpu",
                        help="device for the gallery: cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--force", action="store_true",
                        help="write -o even when it is a run's checkpoint, metrics.jsonl or "
                        "config.json (refused otherwise)")
    parser.add_argument("--json", action="store_true", help="print what was written as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.web.report import DEFAULT_GALLERY, default_report_path, write_report

    output = Path(args.output) if args.output else default_report_path(args.runs)
    warn_stopped_runs(args.runs)
    gallery = DEFAULT_GALLERY if args.gallery is None else args.gallery
    summary = write_report(args.runs, output, gallery=gallery, device=args.device,
                           force=args.force)
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {summary['path']} ({summary['runs']} run(s), {summary['gallery']} "
              f"gallery image(s), {summary['bytes'] // 1024} KiB)")
    return 0


def warn_stopped_runs(runs: list[str]) -> None:
    """One warning per run directory whose training stopped before its last epoch (it
    holds ``error.txt``, which ``fcnkit train`` removes when a run finishes): the report
    shows its last complete epoch, not a finished run."""
    for run in runs:
        try:
            lines = (Path(run) / "error.txt").read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        reason = lines[0].split(" training stopped: ", 1)[-1] if lines else "see error.txt"
        warn(f"{run}: the training did not finish ({reason}); the report shows its last "
             f"complete epoch; resume it with fcnkit train --resume {run}")
