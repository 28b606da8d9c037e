"""``fcnkit eval``: the FCN paper's metrics of a checkpoint on a dataset split.

Examples::

    fcnkit eval --checkpoint runs/demo/best.pt --data ~/.cache/fcnkit/synth
    fcnkit eval --checkpoint runs/demo --data voc:VOCdevkit/VOC2012 --split val --json
    fcnkit eval --checkpoint best.pt --data folder:DATA --sliding --window 320,480 --overlap 0.5
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fcnkit.cli._common import (
    add_backend_arguments,
    backend_options,
    dims,
    format_table,
    print_json,
    warn,
)

NAME = "eval"
#: Sliding-window tile size when ``--sliding`` is given without ``--window``.
DEFAULT_WINDOW = 512


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="evaluate a checkpoint: per-class IoU, pixel acc, mean acc, mIoU, fwIoU",
        description=(
            "Run a checkpoint over a dataset split and print the per-class IoU table and "
            "the four metrics of Long et al. (2015) computed from one confusion matrix "
            "accumulated over the whole split (pixels labelled 255 are ignored). "
            "Inference is whole-image by default; --sliding averages the logits of "
            "overlapping windows."
        ),
    )
    parser.add_argument(
        "--checkpoint", required=True,
        help="checkpoint file, or a run directory (its best.pt, else last.pt), or an .onnx "
        "model (with --backend onnxruntime)",
    )
    parser.add_argument(
        "--data", required=True,
        help="dataset: voc:ROOT, folder:ROOT, synth:ROOT or a directory (layout detected)",
    )
    parser.add_argument("--split", default="val", help="split to evaluate (default val)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument(
        "--sliding", action="store_true",
        help=f"sliding-window inference (window {DEFAULT_WINDOW} unless --window is given)",
    )
    parser.add_argument(
        "--window", type=dims, default=None,
        help="sliding-window size: N or H,W pixels (implies --sliding)",
    )
    parser.add_argument(
        "--overlap", type=float, default=0.33,
        help="fraction of a window shared by neighbouring windows, in [0, 1) (default 0.33)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=1,
        help="images per batch (default 1, exact); larger batches pad smaller images with "
        "ignored pixels, which slightly changes predictions near their bottom/right edges",
    )
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument(
        "--skip-bad", action="store_true",
        help="skip unreadable or inconsistent samples with a warning instead of stopping",
    )
    add_backend_arguments(parser)
    parser.set_defaults(handler=run)


def checkpoint_file(path: str) -> Path:
    """A checkpoint file, or a run directory's ``best.pt`` (``last.pt`` if there is no best)."""
    from fcnkit.engine.checkpoint import resolve_checkpoint_path

    p = Path(path).expanduser()
    if p.is_dir() and not (p / "best.pt").is_file():
        return resolve_checkpoint_path(p, name="last.pt")
    return resolve_checkpoint_path(p, name="best.pt")


class _CountingLoader:
    """Wraps a loader and counts the images (batch rows) it yields."""

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader
        self.images = 0

    def __iter__(self) -> Iterator[Any]:
        from fcnkit.engine.evaluate import split_batch

        for batch in self.loader:
            self.images += int(split_batch(batch)[0].shape[0])
            yield batch


def run(args: Any) -> int:
    from torch.utils.data import DataLoader

    from fcnkit.arith.tiling import check_overlap
    from fcnkit.data import open_dataset
    from fcnkit.data.transforms import eval_transform, pad_collate
    from fcnkit.engine.backends import is_onnx_file, open_backend
    from fcnkit.engine.checkpoint import load_checkpoint
    from fcnkit.engine.evaluate import evaluate
    from fcnkit.engine.inference import as_window, resolve_device
    from fcnkit.errors import InputError

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers < 0:
        raise InputError(f"--workers must be >= 0, got {args.workers}")
    window = as_window(args.window) if args.window is not None else None
    if window is None and args.sliding:
        window = (DEFAULT_WINDOW, DEFAULT_WINDOW)
    check_overlap(args.overlap)  # fail on a bad --overlap before any work
    device = resolve_device(args.device)

    onnx_model = is_onnx_file(args.checkpoint)
    source = args.checkpoint if onnx_model else load_checkpoint(checkpoint_file(args.checkpoint))
    dataset = open_dataset(args.data, args.split, transform=eval_transform(),
                           skip_bad=args.skip_bad)
    num_classes = int(dataset.num_classes)
    opened = open_backend(source, device=device, num_classes=num_classes,
                          **backend_options(args))
    model = opened.backend
    ckpt_classes = opened.classes
    data_classes = list(getattr(dataset, "classes", None) or [])
    if ckpt_classes and data_classes and ckpt_classes != data_classes:
        warn(f"checkpoint classes {ckpt_classes} differ from the dataset's {data_classes}; "
             "the table uses the checkpoint's names")
    if len(dataset) == 0:
        raise InputError(f"--data {args.data}: split {args.split!r} holds no images; "
                         "pass a split with images (e.g. --split val)")
    loader = _CountingLoader(DataLoader(
        dataset, batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
        collate_fn=pad_collate,
    ))
    cm = evaluate(model, loader, num_classes=num_classes, device=device, window=window,
                  overlap=args.overlap)
    result = dict(cm.compute())
    result["num_images"] = loader.images
    result["skipped"] = int(getattr(dataset, "skipped", 0) or 0)
    if args.json:
        print_json(_nan_to_none(result))
        return 0
    print(format_report(result, ckpt_classes or data_classes))
    mode = "whole-image" if window is None else (
        f"sliding window {window[0]}x{window[1]}, overlap {args.overlap:g}")
    skipped = f" ({result['skipped']} bad samples skipped)" if result["skipped"] else ""
    print(f"\n{loader.images} images of split {args.split!r}{skipped}, {mode}, "
          f"{model.describe()}, model {opened.source}")
    return 0


def format_report(result: dict[str, Any], classes: list[str]) -> str:
    """The per-class IoU table followed by the four summary metrics."""
    ious = list(result.get("iou", []))
    rows = []
    for index, iou in enumerate(ious):
        name = classes[index] if index < len(classes) else str(index)
        rows.append([index, name, _percent(iou)])
    per_class = format_table(rows, ["id", "class", "IoU %"])
    summary = format_table(
        [
            ["pixel accuracy", _percent(result.get("pixel_acc"))],
            ["mean accuracy", _percent(result.get("mean_acc"))],
            ["mean IoU", _percent(result.get("miou"))],
            ["frequency-weighted IoU", _percent(result.get("fwiou"))],
        ],
        ["metric", "%"],
    )
    return f"{per_class}\n\n{summary}"


def _nan_to_none(value: Any) -> Any:
    """NaN (undefined score) → None, so ``--json`` output is strict JSON (``null``)."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def _percent(value: Any) -> str:
    """Fraction → percentage with 2 decimals, right-aligned; NaN/None (absent class) → "-"."""
    if value is None or float(value) != float(value):  # NaN: absent from target and prediction
        return f"{'-':>6}"
    return f"{100.0 * float(value):6.2f}"
