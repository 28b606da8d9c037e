"""``fcnkit train``: train an FCN (one process, or DDP through torchrun's machinery)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from fcnkit.cli._common import device, dims, non_negative_int, positive_int, print_json
from fcnkit.errors import InputError

# Flags whose value is a comma-separated pair of numbers.
_PAIRS = {"crop", "scale_range"}


def _float_pair(text: str) -> tuple[float, float]:
    try:
        values = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        values = ()
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX like 0.5,2.0, got {text!r}")
    return values  # type: ignore[return-value]


def _crop(text: str) -> tuple[int, int]:
    value = dims(text)
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _device_name(text: str) -> str:
    """cpu, cuda or cuda:N, checked to exist here (engine.inference.resolve_device)."""
    return str(device(text))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a segmentation model (writes a run directory)",
        description=(
            "Train an FCN with per-pixel cross-entropy (label 255 ignored), SGD + poly LR decay "
            "or AdamW, validation every epoch, RUN_DIR/last.pt and best.pt (by val mIoU), "
            "metrics.jsonl, curves.png and config.json. --resume RUN_DIR continues exactly; "
            "options not given are then taken from the run's config. --nproc N trains with "
            "N processes (DistributedDataParallel via torchrun's launcher)."
        ),
    )
    a = parser.add_argument
    # Every default is None: the real defaults live in TrainConfig (or the resumed run).
    a("--data", help="dataset: synth:DIR, voc:ROOT, folder:ROOT or a directory")
    a("--train-split", help="training split name (default train)")
    a("--val-split", help="validation split name (default val)")
    a("--model", help="model name (default fcn8s; see fcnkit models)")
    a("--backbone", help="backbone (default resnet18)")
    a("--upsample", choices=("bilinear", "deconv", "interpolate"), help="upsampling layers")
    a("--epochs", type=positive_int, help="total epochs (default 30)")
    a("--batch-size", type=positive_int, help="images per process per step (default 8)")
    a("--lr", type=_positive_float, help="base learning rate (default 0.01)")
    a("--optimizer", choices=("sgd", "adamw"), help="optimizer (default sgd, momentum 0.9)")
    a("--momentum", type=float, help="SGD momentum (default 0.9)")
    a("--weight-decay", type=float, help="weight decay (default 1e-4)")
    a("--lr-power", type=float, help="poly decay exponent (default 0.9)")
    a("--crop", type=_crop, metavar="H,W", help="training crop in pixels (default 256,256)")
    a("--scale-range", type=_float_pair, metavar="MIN,MAX", help="random rescale (0.5,2.0)")
    a("--hflip", action=argparse.BooleanOptionalAction, help="random horizontal flips (on)")
    a("--color-jitter", action=argparse.BooleanOptionalAction, help="colour jitter (on)")
    a("--class-weights", metavar="auto|W1,W2,..", help="cross-entropy class weights")
    a("--out", metavar="RUN_DIR", help="run directory (default runs/<model>)")
    a("--resume", metavar="RUN_DIR|CKPT", help="continue a run from its last.pt")
    a("--seed", type=int, help="random seed (default 0)")
    a("--workers", type=non_negative_int, help="data loader workers per process (default 2)")
    a("--device", type=_device_name, metavar="DEVICE", help="cpu, cuda or cuda:N (default cpu)")
    a("--amp", action=argparse.BooleanOptionalAction, help="mixed precision on CUDA (on)")
    a("--skip-bad", action=argparse.BooleanOptionalAction, help="skip unreadable samples")
    a("--sync-bn", action=argparse.BooleanOptionalAction, help="SyncBatchNorm under DDP")
    a("--log-every", type=positive_int, help="metrics.jsonl step line every N steps (default 10)")
    a("--max-steps-per-epoch", type=positive_int, help="cap on optimizer steps per epoch")
    a("--threads", type=positive_int, help="torch threads per process (default cores / processes)")
    a("--progress", action=argparse.BooleanOptionalAction,
      help="per-step progress: a bar on a terminal, else a line per log window (on)")
    parser.add_argument("--nproc", type=positive_int, default=1,
                        help="processes on this node (DDP; default 1)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> Any:
    """A TrainConfig from the flags given; with --resume, missing flags come from the run."""
    from fcnkit.engine.config import TrainConfig
    from fcnkit.engine.train import resume_config

    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "model_options"]
    given = {name: getattr(args, name) for name in fields
             if getattr(args, name, None) is not None}
    if args.resume is not None:
        base = resume_config(args.resume)
        return base.replace(**given)
    if "data" not in given:
        raise InputError("--data is required (e.g. --data synth:DIR); or pass --resume RUN_DIR")
    return TrainConfig(**given)


def config_to_argv(config: Any) -> list[str]:
    """The ``fcnkit train`` flags that rebuild ``config`` (used to launch DDP workers)."""
    argv: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "model_options":
            if value:
                raise ValueError("model options beyond --backbone/--upsample cannot be "
                                 "passed to worker processes; use torchrun with the library")
            continue
        if value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif f.name in _PAIRS:
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def run(args: argparse.Namespace) -> int:
    from fcnkit.engine import distributed
    from fcnkit.engine.train import train

    config = config_from_args(args)
    if args.nproc > 1 and not distributed.launched_by_torchrun():
        # Relaunch this command as N workers; the workers see RANK/WORLD_SIZE and train.
        argv = ["fcnkit", "train", *config_to_argv(config)]
        if args.json:
            argv.append("--json")
        return distributed.launch_single_node(args.nproc, argv)
    result = train(config)
    if distributed.launched_by_torchrun() and os.environ.get("RANK", "0") != "0":
        return 0
    if args.json:
        print_json(result)
    else:
        from fcnkit.cli._common import format_table

        m = result["metrics"]
        rows = [[k, m[k]] for k in ("pixel_acc", "mean_acc", "miou", "fwiou") if k in m]
        rows += [["best_miou", result["best_miou"]], ["train_loss", result["train_loss"]],
                 ["time_s", round(result["time_s"], 1)]]
        print(format_table(rows, ["metric", "value"]))
        if result["skipped"]:
            print(f"skipped {result['skipped']} bad sample(s) (--skip-bad)")
        print(f"run directory: {result['run_dir']} (last.pt, best.pt, metrics.jsonl, curves.png)")
    return 0
