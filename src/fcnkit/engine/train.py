"""Train a fully convolutional network: one loop, readable top to bottom.

Single process::

    fcnkit train --data synth:~/.cache/fcnkit/synthetic --model fcn8s --backbone resnet18 \\
        --epochs 20 --batch-size 8 --lr 0.01 --crop 160,160 --out runs/fcn8s

Several processes on one node (DDP, gloo on CPU / nccl on CUDA)::

    fcnkit train --nproc 2 --data ... --out runs/fcn8s_ddp
    torchrun --standalone --nproc-per-node 2 -m fcnkit train --data ... --out runs/fcn8s_ddp

Continue an interrupted run exactly where its last epoch ended::

    fcnkit train --resume runs/fcn8s

From Python::

    from fcnkit.engine.config import TrainConfig
    from fcnkit.engine.train import train
    result = train(TrainConfig(data="synth:DIR", epochs=2, out="runs/x"))

The recipe follows Long, Shelhamer & Darrell (2015) and torchvision's
``references/segmentation/train.py``: per-pixel cross-entropy that ignores the void label,
SGD with momentum and the "poly" learning-rate decay, or AdamW (:mod:`fcnkit.engine.optim`);
validation (FCN metrics over the whole split) after every epoch; ``last.pt`` every epoch
and ``best.pt`` at the best val mIoU (schema: :class:`fcnkit.engine.checkpoint.TrainingCheckpoint`).

This module is the loop: :func:`get_dataset`, :func:`get_loaders`, :func:`train_one_epoch`,
:func:`validate` and :func:`train`, which ties them together. What it writes besides the
checkpoints is the run log (:mod:`fcnkit.engine.runlog`)::

    config.json      the TrainConfig
    metrics.jsonl    one JSON line per log window ("kind": "step") and per epoch ("epoch")
    curves.png       loss, learning rate and validation metrics
    last.pt best.pt  checkpoints

The loss stays on the device during a log window and is read back once at its end (one
host sync per ``log_every`` steps, not one per step); a loss that is not finite stops the
run at that point.

Determinism: the model is initialised from ``seed``; at the start of every epoch the
python/numpy/torch generators are re-seeded from ``(seed, epoch, rank)`` and the sampler
shuffles with ``(seed, epoch)``. An epoch's randomness therefore depends only on where it
is in the run, which is why 2 epochs straight and 1 epoch + ``--resume`` give identical
weights on the CPU.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from fcnkit.atomic import write_text_atomic
from fcnkit.engine import checkpoint as ckpt_io
from fcnkit.engine import distributed as ddp
from fcnkit.engine.checkpoint import TrainingCheckpoint
from fcnkit.engine.config import TrainConfig
from fcnkit.engine.inference import resolve_device
from fcnkit.engine.optim import (
    build_optimizer,
    build_scheduler,
    median_frequency_weights,
    parse_class_weights,
    poly_factor,
    segmentation_loss,
    set_schedule_position,
)
from fcnkit.engine.runlog import ConsoleProgress, RunLog, draw_curves
from fcnkit.errors import InputError, warn

# Re-exported: the loss and schedule the loop uses live in engine.optim.
__all__ = [
    "class_weights_for",
    "get_dataset",
    "get_loaders",
    "model_options",
    "poly_factor",
    "resume_config",
    "segmentation_loss",
    "train",
    "train_one_epoch",
    "validate",
]

# --------------------------------------------------------------------------------------------
# Data


def get_dataset(config: TrainConfig, split: str, *, train: bool) -> Any:
    """Open ``config.data``'s ``split`` with the training or the evaluation transform."""
    from fcnkit.data import open_dataset
    from fcnkit.data.transforms import eval_transform, train_transform

    if train:
        transform = train_transform(
            crop_size=config.crop,
            scale_range=config.scale_range,
            hflip=config.hflip,
            color_jitter=config.color_jitter,
        )
    else:
        transform = eval_transform()
    dataset = open_dataset(config.data, split, transform=transform, skip_bad=config.skip_bad)
    if len(dataset) == 0:
        raise InputError(f"data {config.data}: split {split!r} is empty; add images to it")
    return dataset


def get_loaders(
    config: TrainConfig, train_set: Any, val_set: Any, info: ddp.DistInfo
) -> tuple[DataLoader, DistributedSampler, DataLoader]:
    """Training loader (shuffled shard per rank) and validation loader (exact shard).

    Validation uses batch size 1 so that no padding ever touches an image: each image's
    prediction is then independent of how the split is sharded or batched.
    """
    from fcnkit.data.transforms import pad_collate

    # DistributedSampler with one replica is a seeded shuffle; with several it also shards.
    # shuffle order = f(seed, epoch) via set_epoch, so resuming reproduces it.
    train_sampler = DistributedSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
        seed=config.seed, drop_last=False,
    )
    pin = torch.device(config.device).type == "cuda"
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        sampler=train_sampler,
        num_workers=config.workers,
        collate_fn=pad_collate,
        pin_memory=pin,
        # A last batch of one image breaks BatchNorm; drop it when a full batch exists.
        drop_last=len(train_sampler) > config.batch_size,
    )
    val_sampler = ddp.ShardedEvalSampler(len(val_set), rank=info.rank, world_size=info.world_size)
    val_loader = DataLoader(
        val_set, batch_size=1, sampler=val_sampler, num_workers=config.workers,
        collate_fn=pad_collate, pin_memory=pin,
    )
    return train_loader, train_sampler, val_loader


def class_weights_for(config: TrainConfig, train_set: Any, num_classes: int) -> torch.Tensor | None:
    """Cross-entropy class weights from ``config.class_weights``.

    None: unweighted. ``"auto"``: median-frequency balancing over the un-augmented training
    masks (:func:`fcnkit.engine.optim.median_frequency_weights`). Else one weight per class.
    """
    spec = config.class_weights
    if spec is None:
        return None
    if spec != "auto":
        return parse_class_weights(spec, num_classes)
    plain = get_dataset(config, config.train_split, train=False)
    return median_frequency_weights((plain[i][1] for i in range(len(plain))), num_classes)


# --------------------------------------------------------------------------------------------
# Model


def model_options(config: TrainConfig) -> dict[str, Any]:
    """Keyword options for ``build_model`` besides name and num_classes.

    ``backbone`` is passed only to models that take one (``fcn_resnet18_d2l`` has its
    backbone built in), so the default backbone works with every model.
    """
    from fcnkit.models.registry import model_options as accepted_options

    options: dict[str, Any] = {}
    try:
        accepted = accepted_options(config.model)
    except ValueError as exc:
        raise InputError(f"model {config.model!r}: {exc}") from None
    if config.backbone is not None and "backbone" in accepted:
        options["backbone"] = config.backbone
    if config.upsample is not None:
        options["upsample"] = config.upsample
    options.update(config.model_options)
    return options


def build_training_model(
    config: TrainConfig, num_classes: int, resume: Mapping[str, Any] | None
) -> tuple[nn.Module, dict[str, Any]]:
    """The model to train, seeded (the same initial weights on every rank), with the
    resumed checkpoint's weights when there is one. Returns ``(model, model_config)``."""
    from fcnkit.models import build_model

    seed_everything(config.seed)
    model_config = {"name": config.model, "num_classes": num_classes, **model_options(config)}
    try:
        model = build_model(**model_config)
    except (TypeError, KeyError) as exc:
        raise InputError(f"model {model_config}: {exc}; see fcnkit models") from None
    if resume is not None:
        _check_resume_fits(resume, model_config)
        model.load_state_dict(resume["model_state"])
    return model, model_config


def seed_everything(seed: int, epoch: int = 0, rank: int = 0) -> None:
    """Seed python, numpy and torch from ``(seed, epoch, rank)`` (SeedSequence mixing)."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, dtype=np.uint32)
    value = int(state[0]) << 32 | int(state[1])
    random.seed(value)
    np.random.seed(int(state[0]))
    torch.manual_seed(value)


# --------------------------------------------------------------------------------------------
# One epoch


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    epoch: int,
    step: int,
    steps: int,
    config: TrainConfig,
    device: torch.device,
    weight: torch.Tensor | None = None,
    scaler: torch.amp.GradScaler | None = None,
    log: RunLog | None = None,
    console: ConsoleProgress | None = None,
) -> tuple[int, float]:
    """Train for ``steps`` batches of ``loader``. Returns (global step, mean loss over ranks).

    Every ``config.log_every`` steps, and at the epoch's last step, the window's losses are
    summed over the ranks and read back to the host (the only host sync of the window),
    appended to ``log`` as a ``"step"`` record and shown by ``console``.

    Raises:
        InputError: the loss became NaN or infinite (the learning rate is too high).
    """
    console = console or ConsoleProgress(enabled=False)
    model.train()
    console.start_epoch(epoch + 1, config.epochs, steps)
    window_loss = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device
    window_images = window_batches = 0
    epoch_loss, epoch_batches = 0.0, 0.0
    window_start = time.perf_counter()
    for i, (images, masks) in enumerate(itertools.islice(loader, steps)):
        images = images.to(device, non_blocking=True)
        masks = masks.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16,
                            enabled=scaler is not None):
            logits = model(images)
        loss = segmentation_loss(logits, masks, weight)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        step += 1
        window_loss += loss.detach()
        window_images += images.shape[0]
        window_batches += 1
        console.advance()
        if step % config.log_every != 0 and i + 1 != steps:
            continue
        # End of a log window: sum over ranks (every rank reaches this line at the same
        # steps, so the collective matches up) and read back once.
        totals = torch.stack([window_loss, window_loss.new_tensor(window_images),
                              window_loss.new_tensor(window_batches)])
        loss_sum, images_seen, batches_seen = ddp.all_reduce_sum(totals).tolist()
        if not math.isfinite(loss_sum):
            raise InputError(
                f"training loss became {loss_sum} by step {step} (lr {config.lr}); "
                "lower the learning rate"
            )
        epoch_loss, epoch_batches = epoch_loss + loss_sum, epoch_batches + batches_seen
        record = {
            "kind": "step", "epoch": epoch + 1, "step": step,
            "loss": loss_sum / max(batches_seen, 1.0),
            "lr": optimizer.param_groups[0]["lr"],
            "img_per_s": images_seen / max(time.perf_counter() - window_start, 1e-9),
        }
        if log is not None:
            log.append(record)
        console.log_window(record, i + 1)
        window_loss.zero_()
        window_images = window_batches = 0
        window_start = time.perf_counter()
    console.end_epoch()
    return step, epoch_loss / max(epoch_batches, 1.0)


@torch.no_grad()
def validate(
    model: nn.Module, loader: DataLoader, *, num_classes: int, device: torch.device,
    classes: list[str],
) -> dict[str, Any]:
    """Evaluate the bare (un-wrapped) model; every rank gets the all-reduced metrics:
    the FCN paper's scores, per-class IoU, class names and the confusion matrix."""
    from fcnkit.engine.evaluate import evaluate

    computed = evaluate(model, loader, num_classes=num_classes, device=device)
    scores = computed.compute()
    metrics: dict[str, Any] = {
        key: float(scores[key]) for key in ("pixel_acc", "mean_acc", "miou", "fwiou")
        if key in scores
    }
    if scores.get("iou") is not None:
        metrics["iou"] = [float(v) for v in np.asarray(scores["iou"], dtype=float).tolist()]
    metrics["classes"] = list(classes)
    metrics["confusion"] = np.asarray(computed.matrix, dtype=np.int64).tolist()
    return metrics


# --------------------------------------------------------------------------------------------
# The run


def train(
    config: TrainConfig, *, on_epoch: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Train (or resume) a model as ``config`` says; write the run directory.

    Args:
        config: the run's settings.
        on_epoch: optional callback, called on every rank after each epoch's validation
            with the epoch record (``metrics.jsonl``'s ``"epoch"`` line).

    Returns:
        ``{"run_dir", "skipped", "last", "best", "best_miou", "epoch", "step",
        "train_loss", "metrics" (last validation), "world_size", "batch_size",
        "effective_batch_size", "time_s"}``; paths as strings.

    Raises:
        InputError: bad data, a device that is absent, a checkpoint that does not fit, a
            missing resume checkpoint, a loss that diverged.
    """
    start_time = time.perf_counter()
    device = resolve_device(config.device)
    resume = load_resume_checkpoint(config)  # before creating anything: fail early
    info = ddp.init_distributed(device)
    try:
        if device.type == "cuda" and info.distributed:
            device = torch.device("cuda", info.local_rank)  # one GPU per process
        return _run(config, info, device, resume, on_epoch, start_time)
    finally:
        ddp.cleanup_distributed()


def _run(
    config: TrainConfig,
    info: ddp.DistInfo,
    device: torch.device,
    resume: dict[str, Any] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    start_time: float,
) -> dict[str, Any]:
    _configure_threads(config)
    run_dir = resolve_run_dir(config)
    console = ConsoleProgress(enabled=info.is_main, bar=config.progress)

    # Data
    train_set = get_dataset(config, config.train_split, train=True)
    val_set = get_dataset(config, config.val_split, train=False)
    num_classes = int(train_set.num_classes)
    classes = list(getattr(train_set, "classes", [str(i) for i in range(num_classes)]))
    palette = [list(map(int, c)) for c in getattr(train_set, "palette", [])]
    train_loader, train_sampler, val_loader = get_loaders(config, train_set, val_set, info)
    steps_per_epoch = min(len(train_loader), config.max_steps_per_epoch or len(train_loader))
    if steps_per_epoch == 0:
        raise InputError(f"data {config.data}: the training split yields no batch")
    total_steps = config.epochs * steps_per_epoch

    # Model, loss, optimizer, schedule
    model, model_config = build_training_model(config, num_classes, resume)
    model = ddp.wrap_model(model, info, device, sync_bn=config.sync_bn)
    bare = ddp.unwrap_model(model)
    optimizer = build_optimizer(model, name=config.optimizer, lr=config.lr,
                                momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = build_scheduler(optimizer, total_steps, config.lr_power)
    scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
    weight = class_weights_for(config, train_set, num_classes)
    if weight is not None:
        weight = weight.to(device)

    # Where the run starts: epoch 0, or where the resumed checkpoint ended
    state = TrainingCheckpoint.from_payload(resume) if resume else None
    start_epoch, step = (state.epoch, state.step) if state else (0, 0)
    best_miou = state.best_miou if state else -math.inf
    metrics: dict[str, Any] = dict(state.metrics) if state else {}
    if state is not None:
        _restore_training_state(state, optimizer, scheduler, scaler)
        set_schedule_position(scheduler, optimizer, start_epoch * steps_per_epoch, total_steps,
                              config.lr_power)

    log = open_run_log(run_dir, config, keep_up_to_step=step, is_main=info.is_main)
    console.line(
        f"fcnkit train: {config.model} ({model_config}) on {len(train_set)} train / "
        f"{len(val_set)} val images; {info.world_size} process(es) x batch "
        f"{config.batch_size} = effective batch {info.world_size * config.batch_size}; "
        f"{steps_per_epoch} steps/epoch; epochs {start_epoch + 1}..{config.epochs}; "
        f"run dir {run_dir}"
    )
    if info.is_main and start_epoch >= config.epochs:
        warn(f"{run_dir}: the {ckpt_io.describe_checkpoint(resume or {})} already trained "
             f"{start_epoch} of {config.epochs} epochs; nothing to do (ask for more epochs "
             "to continue)")
    train_loss = float("nan")
    with log:
        for epoch in range(start_epoch, config.epochs):
            epoch_start = time.perf_counter()
            seed_everything(config.seed, epoch + 1, info.rank)
            train_sampler.set_epoch(epoch)
            step, train_loss = train_one_epoch(
                model, train_loader, optimizer, scheduler, epoch=epoch, step=step,
                steps=steps_per_epoch, config=config, device=device, weight=weight,
                scaler=scaler, log=log, console=console,
            )
            metrics = validate(bare, val_loader, num_classes=num_classes, device=device,
                               classes=classes)
            miou = metrics.get("miou", float("nan"))
            is_best = math.isfinite(miou) and miou > best_miou
            best_miou = miou if is_best else best_miou
            record = {
                "kind": "epoch", "epoch": epoch + 1, "step": step, "train_loss": train_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "time_s": time.perf_counter() - epoch_start,
                **{k: metrics[k] for k in ("pixel_acc", "mean_acc", "miou", "fwiou")
                   if k in metrics},
            }
            if info.is_main:
                log.append(record)
                checkpoint = TrainingCheckpoint(
                    model_state=bare.state_dict(), model_config=model_config,
                    classes=classes, palette=palette, config=config.to_dict(),
                    epoch=epoch + 1, step=step, optimizer_state=optimizer.state_dict(),
                    scheduler_state=scheduler.state_dict(),
                    scaler_state=scaler.state_dict() if scaler is not None else {},
                    rng_state=ckpt_io.capture_rng_state(), metrics=metrics,
                    best_miou=best_miou, world_size=info.world_size,
                )
                save_epoch(run_dir, checkpoint, log, is_best=is_best)
            console.line(
                f"epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f}, val mIoU "
                f"{miou:.4f}, pixel acc {metrics.get('pixel_acc', float('nan')):.4f} "
                f"({record['time_s']:.1f} s){' *best*' if is_best else ''}"
            )
            ddp.barrier()  # no rank starts the next epoch before rank 0 wrote the checkpoint
            if on_epoch is not None:
                on_epoch(record)

    return {
        "run_dir": str(run_dir),
        "skipped": sum(int(getattr(ds, "skipped", 0) or 0) for ds in (train_set, val_set)),
        "last": str(run_dir / "last.pt"),
        "best": str(run_dir / "best.pt"),
        "best_miou": best_miou,
        "epoch": config.epochs,
        "step": step,
        "train_loss": train_loss,
        "metrics": metrics,
        "world_size": info.world_size,
        "batch_size": config.batch_size,
        "effective_batch_size": config.batch_size * info.world_size,
        "time_s": time.perf_counter() - start_time,
    }


# --------------------------------------------------------------------------------------------
# The run directory


def open_run_log(run_dir: Path, config: TrainConfig, *, keep_up_to_step: int,
                 is_main: bool) -> RunLog:
    """Rank 0: create ``run_dir``, write ``config.json``, open ``metrics.jsonl`` (kept up
    to the resumed step). Other ranks: a log that writes nothing."""
    if not is_main:
        return RunLog.in_memory()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.json", config.to_json())
    return RunLog.open(run_dir / "metrics.jsonl", keep_up_to_step=keep_up_to_step)


def save_epoch(run_dir: Path, checkpoint: TrainingCheckpoint, log: RunLog, *,
               is_best: bool) -> None:
    """An epoch's files (rank 0): ``last.pt``, ``best.pt`` when it is the best so far,
    ``curves.png``."""
    payload = checkpoint.to_payload()
    ckpt_io.save_checkpoint(run_dir / "last.pt", payload)
    if is_best:
        ckpt_io.save_checkpoint(run_dir / "best.pt", payload)
    draw_curves(log.records, run_dir / "curves.png")


# --------------------------------------------------------------------------------------------
# Resuming


def resolve_run_dir(config: TrainConfig) -> Path:
    """``config.out``, else the resumed run's directory, else ``runs/<model>``."""
    if config.out is not None:
        return Path(config.out).expanduser()
    if config.resume is not None:
        resume = Path(config.resume).expanduser()
        return resume if resume.is_dir() else resume.parent
    return Path("runs") / config.model


def load_resume_checkpoint(config: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint ``config.resume`` names (RUN_DIR → RUN_DIR/last.pt), or None."""
    if config.resume is None:
        return None
    path = Path(config.resume).expanduser()
    if not path.exists():
        raise InputError(
            f"resume {path} does not exist; pass a run directory written by fcnkit train "
            "(or its last.pt)"
        )
    return ckpt_io.load_checkpoint(ckpt_io.resolve_checkpoint_path(path, name="last.pt"))


def resume_config(path: str | os.PathLike[str]) -> TrainConfig:
    """The TrainConfig stored in a run directory's last.pt (or a checkpoint file)."""
    file = ckpt_io.resolve_checkpoint_path(Path(path).expanduser(), name="last.pt")
    stored = ckpt_io.load_checkpoint(file).get("config")
    if not isinstance(stored, Mapping) or not stored:
        raise InputError(f"checkpoint {file} holds no training config; give the data and "
                         "options explicitly")
    return TrainConfig.from_dict(stored)


def _check_resume_fits(ckpt: Mapping[str, Any], model_config: Mapping[str, Any]) -> None:
    stored = ckpt["model_config"]
    for key, value in model_config.items():
        if stored.get(key) != value:
            raise InputError(
                f"checkpoint {ckpt.get('path')} is a {ckpt_io.describe_checkpoint(ckpt)}, but "
                f"this run asks for {key}={value!r}; resume with the run's own settings or "
                "start a new run in another directory"
            )


def _restore_training_state(
    state: TrainingCheckpoint,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Optimizer, schedule, AMP scaler and RNG states of a resumed checkpoint."""
    if state.optimizer_state:
        optimizer.load_state_dict(state.optimizer_state)
    if state.scheduler_state:
        scheduler.load_state_dict(state.scheduler_state)
    if scaler is not None and state.scaler_state:
        scaler.load_state_dict(state.scaler_state)
    if state.rng_state:
        ckpt_io.restore_rng_state(state.rng_state)


def _configure_threads(config: TrainConfig) -> None:
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    elif torch.device(config.device).type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local)))


def main(config: TrainConfig) -> int:
    """Entry point used by ``fcnkit train``: train and return the exit code."""
    train(config)
    return 0
