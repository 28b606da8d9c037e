"""``fcnkit train``: train an FCN (one process, or DDP through torchrun's machinery)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from fcnkit.cli._common import (
    PRECISION_HELP,
    check_not_under_file,
    device,
    format_table,
    int_in,
    print_json,
    ranged,
)
from fcnkit.runtime.precision import LAYOUTS, PRECISIONS
from fcnkit.training.config import COMPILE_CHOICES, RECIPES


def _device_name(text: str) -> str:
    """cpu, cuda or cuda:N, checked to exist here (runtime.device.resolve_device)."""
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
    a("--data", help="dataset: synth:DIR, voc:ROOT, cityscapes:ROOT, ade20k:ROOT, folder:ROOT "
      "or a directory")
    a("--train-split", help="training split name (default train)")
    a("--val-split", help="validation split name (default val)")
    a("--model", help="model name (default fcn8s; see fcnkit models)")
    a("--backbone", help="backbone (default resnet18)")
    a("--upsample", choices=("bilinear", "deconv", "interpolate"), help="upsampling layers")
    a("--width", type=ranged("width"),
      help="fraction in (0, 1] of the backbone's channel counts (default 1; 0.25 trains "
           "several times faster on a CPU, same strides and receptive fields)")
    a("--epochs", type=ranged("epochs"), help="total epochs (default 30)")
    a("--batch-size", type=ranged("batch_size"), help="images per process per step (default 8)")
    a("--lr", type=ranged("lr"), help="base learning rate (default 0.01)")
    a("--optimizer", choices=("sgd", "adamw"), help="optimizer (default sgd, momentum 0.9)")
    a("--momentum", type=ranged("momentum"), help="SGD momentum (default 0.9)")
    a("--weight-decay", type=ranged("weight_decay"), help="weight decay (default 1e-4)")
    a("--lr-power", type=ranged("lr_power"), help="poly decay exponent (default 0.9)")
    a("--crop", type=ranged("crop"), metavar="H,W",
       help="training crop in pixels (default 256,256)")
    a("--scale-range", type=ranged("scale_range"), metavar="MIN,MAX",
       help="random rescale (0.5,2.0)")
    a("--hflip", action=argparse.BooleanOptionalAction, help="random horizontal flips (on)")
    a("--color-jitter", action=argparse.BooleanOptionalAction, help="colour jitter (on)")
    a("--class-weights", metavar="auto|W1,W2,..", help="cross-entropy class weights")
    a("--out", metavar="RUN_DIR", help="run directory (default runs/<model>)")
    a("--resume", metavar="RUN_DIR|CKPT|auto",
      help="continue a run from its last.pt; auto: the --out run's last.pt if any, else fresh")
    a("--seed", type=ranged("seed"), help="random seed (default 0)")
    a("--workers", type=ranged("workers"), help="data loader workers per process (default 2)")
    a("--device", type=_device_name, metavar="DEVICE", help="cpu, cuda or cuda:N (default cpu)")
    a("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    a("--channels-last", choices=LAYOUTS, help="NHWC model and batches (default auto: on)")
    a("--compile", choices=COMPILE_CHOICES,
      help="torch.compile (inductor) the training step's model (default off; auto: off "
      "until measured faster; needs a C++ compiler on CPU)")
    a("--skip-bad", action=argparse.BooleanOptionalAction, help="skip unreadable samples")
    a("--sync-bn", action=argparse.BooleanOptionalAction, help="SyncBatchNorm under DDP")
    a("--log-every", type=ranged("log_every"),
      help="metrics.jsonl step line every N steps (default 10)")
    a("--max-steps-per-epoch", type=ranged("max_steps_per_epoch"),
      help="cap on optimizer steps per epoch")
    a("--stop-after", type=ranged("stop_after"), metavar="EPOCH",
      help="stop after this epoch, the LR schedule still spanning --epochs (resume later)")
    a("--threads", type=ranged("threads"),
      help="torch threads per process (default cores / processes)")
    a("--init-from", metavar="CKPT",
      help="start from these weights (fcnkit checkpoint/.safetensors, torchvision or "
      "pytorch-fcn file): tensors matching by name and shape are copied; counts reported")
    a("--backbone-weights", metavar="PTH|NAME",
      help="ImageNet backbone weights: a torchvision classifier file (resnet18-f37072fd.pth) "
      "or a weights name (IMAGENET1K_V1) in $TORCH_HOME/hub/checkpoints; nothing downloads")
    a("--recipe", choices=RECIPES,
      help="modern (default) or caffe: the FCN paper's summed loss, SGD momentum 0.99, "
      "fixed lr 1e-10/1e-12/1e-14 (32s/16s/8s), wd 5e-4, biases 2x lr without decay, "
      "frozen bilinear upsampling, whole images at batch 1 (flags given still win)")
    a("--aux-loss-weight", type=ranged("aux_loss_weight"),
      help="weight of the auxiliary head's loss for aux=True models (default 0.5)")
    a("--progress", action=argparse.BooleanOptionalAction,
      help="per-step progress: a bar on a terminal, else a line per log window (on)")
    a("--tensorboard", action=argparse.BooleanOptionalAction,
      help="also log scalars and validation predictions to RUN_DIR/tensorboard "
      "(tensorboard --logdir; pip install 'fcnkit[tensorboard]') (off)")
    parser.add_argument("--nproc", type=int_in(1, 1024), default=1,
                        help="processes on this node (DDP; default 1)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> Any:
    """A TrainConfig from the flags given (:func:`fcnkit.training.flags.config_from_flags`:
    with --resume, missing flags come from the run)."""
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.training.flags import FLAG_FIELDS, config_from_flags

    return config_from_flags({name: getattr(args, name) for name in FLAG_FIELDS
                              if getattr(args, name, None) is not None})


def run(args: argparse.Namespace) -> int:
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.runtime import distributed
    from fcnkit.training.flags import config_to_argv
    from fcnkit.training.loop import train
    from fcnkit.training.rundir import RunLock, resolve_run_dir

    config = config_from_args(args)
    if config.out is not None:
        check_not_under_file(config.out, "--out", directory=True)
    if args.nproc > 1 and not distributed.launched_by_torchrun():
        # A run directory another run holds is refused here, before any worker starts.
        with RunLock(resolve_run_dir(config)):
            pass
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
        m = result["metrics"]
        rows = [[k, m[k]] for k in ("pixel_acc", "mean_acc", "miou", "fwiou") if k in m]
        rows += [["best_miou", result["best_miou"]], ["train_loss", result["train_loss"]],
                 ["time_s", round(result["time_s"], 1)]]
        print(format_table(rows, ["metric", "value"]))
        if result.get("init_from"):
            counts = result["init_from"]
            print(f"init from {config.init_from}: copied {counts['copied']}, skipped "
                  f"{counts['skipped']}, new {counts['new']} tensors")
        if result["skipped"]:
            print(f"skipped {result['skipped']} bad sample(s) (--skip-bad)")
        files = [Path(p).name for p in (result["last"], result["best"]) if p]
        files += [n for n in ("metrics.jsonl", "curves.png")
                  if (Path(result["run_dir"]) / n).is_file()]
        print(f"run directory: {result['run_dir']} ({', '.join(files) or 'nothing written'})")
    return 0
