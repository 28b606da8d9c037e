"""``fcnkit data``: generate the embedded synthetic dataset, inspect a dataset.

Examples::

    fcnkit data synth --out data/synth --train 800 --val 200 --seed 0 --size 150,210
    fcnkit data synth --task shapes --out data/shapes
    fcnkit data synth --task limbs --out data/limbs --size 96,128
    fcnkit data info synth:data/synth --split val
    fcnkit data info folder:my_data --split train --json
"""

from __future__ import annotations

import argparse
import time

from fcnkit.atomic import INCOMPLETE_MARKER
from fcnkit.cli._common import (
    OneLineParser,
    check_not_under_file,
    dims,
    format_table,
    int_in,
    print_json,
    ranged,
    seed,
)
from fcnkit.constants import IGNORE_INDEX
from fcnkit.data.synthetic import TASKS
from fcnkit.limits import SYNTH_MAX_IMAGES
from fcnkit.outputs import check_fresh_directory


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="generate the synthetic dataset; summarise a dataset",
        description="Generate the embedded synthetic dataset (Pascal VOC layout) or "
        "summarise a dataset (image count, sizes, class pixel frequencies).",
    )
    parser.set_defaults(handler=lambda args: _help(parser))
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION",
                                    parser_class=OneLineParser)

    synth = actions.add_parser(
        "synth",
        help="write the synthetic dataset in Pascal VOC layout",
        description="Write a procedural segmentation dataset (--task: objects, shapes, limbs "
        "or regions; docs/datasets.md) as JPEGImages/, SegmentationClass/, "
        "ImageSets/Segmentation/{train,val}.txt, classes.txt and synthetic.json "
        "(limbs/regions add Geometry/, limbs SegmentationPart/). Deterministic per seed.",
    )
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--train", type=int_in(0, SYNTH_MAX_IMAGES), default=800,
                       help="training images (default 800)")
    synth.add_argument("--val", type=int_in(0, SYNTH_MAX_IMAGES), default=200,
                       help="validation images (default 200)")
    synth.add_argument("--seed", type=seed, default=0, help="dataset seed (default 0)")
    synth.add_argument("--size", type=dims, default=(150, 210),
                       help="image size H,W in pixels (default 150,210)")
    synth.add_argument("--task", choices=TASKS, default="objects",
                       help="objects (default: class = shape, colour family and texture); "
                       "shapes (class = shape only; sizes vary around --size); limbs (class "
                       "from a body's stripe orientation, thin limbs, part masks in "
                       "SegmentationPart/); regions (class = a mean chroma under heavy noise)")
    synth.add_argument("--workers", type=ranged("workers"), default=None,
                       help="worker processes (default: up to 2)")
    synth.add_argument("--force", action="store_true",
                       help="write into a non-empty --out that is not an earlier synthetic "
                       "dataset (refused otherwise: its files would be replaced)")
    synth.add_argument("--json", action="store_true", help="print a JSON summary")
    synth.set_defaults(handler=run_synth)

    info = actions.add_parser(
        "info",
        help="summarise a dataset: images, sizes, class pixel frequencies",
        description="Read every mask of a split and report the number of images, their "
        "sizes and each class's pixel count (void excluded).",
    )
    info.add_argument("spec", help="voc:ROOT, cityscapes:ROOT, ade20k:ROOT, folder:ROOT or a "
                      "directory (layout detected)")
    info.add_argument("--split", default="train", help="split name (default train)")
    info.add_argument("--skip-bad", action="store_true",
                      help="skip unreadable or inconsistent samples with a warning")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(handler=run_info)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_synth(args: argparse.Namespace) -> int:
    # local: import cost (scipy.ndimage and PIL, 0.4 s of `fcnkit --help`'s 0.6 s imports)
    from fcnkit.data import read_classes_file
    from fcnkit.data.synthetic import generate_synthetic_dataset

    check_not_under_file(args.out, "--out", directory=True)
    # Its own earlier output holds synthetic.json, or the marker of an interrupted run.
    check_fresh_directory(args.out, own=("synthetic.json", INCOMPLETE_MARKER),
                          what="synthetic dataset", force=args.force)
    size = args.size if isinstance(args.size, tuple) else (args.size, args.size)
    start = time.perf_counter()
    out = generate_synthetic_dataset(args.out, train=args.train, val=args.val, seed=args.seed,
                                     size=size, workers=args.workers, task=args.task)
    seconds = time.perf_counter() - start
    classes, _ = read_classes_file(out / "classes.txt")
    summary = {"out": str(out), "task": args.task, "train": args.train, "val": args.val,
               "seed": args.seed, "size": list(size), "classes": classes,
               "seconds": round(seconds, 2)}
    if args.json:
        print_json(summary)
    else:
        rows = [[key, value] for key, value in summary.items() if key != "classes"]
        rows.append(["classes", ", ".join(classes)])
        print(format_table(rows, ["field", "value"]))
        print(f"read it with: --data synth:{out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.data import dataset_summary, open_dataset

    dataset = open_dataset(args.spec, args.split, skip_bad=args.skip_bad)
    summary = dataset_summary(dataset)  # skipped samples were reported while opening
    if args.json:
        print_json(summary)
        return 0
    print(f"{summary['images']} images in split {args.split!r} of {summary['root']} "
          f"({summary['layout']} layout); sizes {summary['min_size'][0]}x"
          f"{summary['min_size'][1]} .. {summary['max_size'][0]}x{summary['max_size'][1]}")
    rows = [[i, name, count, fraction]
            for i, (name, count, fraction) in enumerate(
                zip(summary["classes"], summary["pixels"], summary["fraction"]))]
    rows.append([IGNORE_INDEX, "void", summary["void_pixels"], summary["void_fraction"]])
    print(format_table(rows, ["index", "class", "pixels", "fraction"]))
    return 0
