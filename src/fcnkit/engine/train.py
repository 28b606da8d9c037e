"""Train a fully convolutional network: one loop, readable top to bottom.

Single process::

    fcnkit train --data synth:~/.cache/fcnkit/synthetic --model fcn8s --backbone resnet18 \\
        --epochs 20 --batch-size 8 --lr 0.01 --crop 160,160 --out runs/fcn8s

Several processes on one node (DDP, gloo on CPU / nccl on CUDA)::

    fcnkit train --nproc 2 --data ... --out runs/fcn8s_ddp
    torchrun --standalone --nproc-per-node 2 -m fcnkit train --data ... --out runs/fcn8s_ddp

Continue an interrupted run exactly where its last epoch ended::

    fcnkit train --resume runs/fcn8s

The recipe follows Long, Shelhamer & Darrell (2015) and torchvision's
``references/segmentation/train.py``: per-pixel cross-entropy that ignores label 255, SGD
with momentum and the "poly" learning-rate decay ``lr = base * (1 - step/total) ** 0.9``
(Chen et al., DeepLab 2016) or AdamW; validation (FCN metrics over the whole split) after
every epoch; ``last.pt`` every epoch and ``best.pt`` at the best val mIoU.

Run directory::

    config.json      the TrainConfig
    metrics.jsonl    one JSON line per logged step ("kind": "step") and per epoch ("epoch")
    curves.png       loss, learning rate and validation metrics
    last.pt best.pt  checkpoints (fcnkit.engine.checkpoint)

Determinism: the model is initialised from ``seed``; at the start of every epoch the
python/numpy/torch generators are re-seeded from ``(seed, epoch, rank)`` and the sampler
shuffles with ``(seed, epoch)``. An epoch's randomness therefore depends only on where it
is in the run, which is why 2 epochs straight and 1 epoch + ``--resume`` give identical
weights on the CPU.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from fcnkit.atomic import write_text_atomic
from fcnkit.engine import checkpoint as ckpt_io
from fcnkit.engine import distributed as ddp
from fcnkit.engine.config import TrainConfig
from fcnkit.engine.precision import autocast, resolve_channels_last, resolve_precision
from fcnkit.errors import InputError

IGNORE_INDEX = 255


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
        raise InputError(f"--data {config.data}: split {split!r} is empty; add images to it")
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

    ``"auto"`` is median-frequency balancing (Eigen & Fergus 2015):
    ``w_c = median(freq) / freq_c``, ``freq_c`` = pixels of class c / pixels of the images
    where c is present, counted over the un-augmented training masks (255 excluded).
    """
    spec = config.class_weights
    if spec is None:
        return None
    if spec != "auto":
        try:
            values = [float(v) for v in str(spec).split(",") if v.strip()]
        except ValueError:
            values = []
        if len(values) != num_classes or any(v < 0 or not math.isfinite(v) for v in values):
            raise InputError(
                f"--class-weights {spec!r} must be 'auto' or {num_classes} comma-separated "
                "non-negative numbers (one per class)"
            )
        return torch.tensor(values, dtype=torch.float32)
    pixels = torch.zeros(num_classes, dtype=torch.float64)
    image_pixels = torch.zeros(num_classes, dtype=torch.float64)
    plain = get_dataset(config, config.train_split, train=False)
    for i in range(len(plain)):
        mask = torch.as_tensor(plain[i][1]).reshape(-1)
        valid = mask[mask != IGNORE_INDEX]
        counts = torch.bincount(valid, minlength=num_classes)[:num_classes].double()
        pixels += counts
        image_pixels += (counts > 0).double() * valid.numel()
    freq = torch.where(image_pixels > 0, pixels / image_pixels.clamp(min=1), torch.nan)
    median = torch.nanmedian(freq)
    weights = torch.where(freq > 0, median / freq, torch.zeros_like(freq))
    return weights.float()


# --------------------------------------------------------------------------------------------
# Model, optimizer, schedule


def model_options(config: TrainConfig) -> dict[str, Any]:
    """Keyword options for ``build_model`` besides name and num_classes.

    ``backbone`` is passed only to models that take one (``fcn_resnet18_d2l`` has its
    backbone built in), so the default ``--backbone resnet18`` works with every model.
    """
    from fcnkit.models.registry import model_options as accepted_options

    options: dict[str, Any] = {}
    try:
        accepted = accepted_options(config.model)
    except ValueError as exc:
        raise InputError(f"--model: {exc}") from None
    if config.backbone is not None and "backbone" in accepted:
        options["backbone"] = config.backbone
    if config.upsample is not None:
        options["upsample"] = config.upsample
    options.update(config.model_options)
    return options


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def poly_factor(step: int, total_steps: int, power: float) -> float:
    """Poly decay (DeepLab, Chen et al. 2016): ``(1 - step / total) ** power``, 0 at the end."""
    return (1.0 - min(step, total_steps) / max(1, total_steps)) ** power


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, power: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LambdaLR with the poly factor (as torchvision's segmentation reference)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: poly_factor(step, total_steps, power)
    )


def segmentation_loss(
    logits: torch.Tensor, masks: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """Mean per-pixel cross-entropy over non-ignored pixels.

    A batch whose pixels are all ignored gives a zero loss that still depends on the
    logits (so every DDP rank runs the same backward), not NaN.
    """
    if not bool((masks != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), masks, weight=weight, ignore_index=IGNORE_INDEX)


def seed_everything(seed: int, epoch: int = 0, rank: int = 0) -> None:
    """Seed python, numpy and torch from ``(seed, epoch, rank)`` (SeedSequence mixing)."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, dtype=np.uint32)
    value = int(state[0]) << 32 | int(state[1])
    random.seed(value)
    np.random.seed(int(state[0]))
    torch.manual_seed(value)


# --------------------------------------------------------------------------------------------
# Logging


@dataclass
class RunLog:
    """``metrics.jsonl`` kept in memory and rewritten atomically (rank 0 only)."""

    path: Path | None
    records: list[dict[str, Any]] = field(default_factory=list)

    def append(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))
        if self.path is not None:
            lines = (json.dumps(r, default=_json_value, allow_nan=True) for r in self.records)
            write_text_atomic(self.path, "".join(f"{line}\n" for line in lines))

    @classmethod
    def resume(cls, path: Path | None, up_to_step: int) -> RunLog:
        """Reload an existing log, dropping lines written after the resumed checkpoint."""
        records: list[dict[str, Any]] = []
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    record = json.loads(line)
                    if int(record.get("step", 0)) <= up_to_step:
                        records.append(record)
        return cls(path, records)


def _json_value(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _metrics_dict(cm: Any, classes: list[str]) -> dict[str, Any]:
    """Scalar metrics, per-class IoU and the raw confusion matrix (plain Python types)."""
    computed = cm.compute()
    metrics: dict[str, Any] = {}
    for key in ("pixel_acc", "mean_acc", "miou", "fwiou"):
        if key in computed:
            metrics[key] = float(computed[key])
    iou = computed.get("iou")
    if iou is not None:
        metrics["iou"] = [float(v) for v in np.asarray(iou, dtype=float).tolist()]
    metrics["classes"] = list(classes)
    metrics["confusion"] = np.asarray(cm.matrix, dtype=np.int64).tolist()
    return metrics


# --------------------------------------------------------------------------------------------
# One epoch


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    epoch: int,
    step: int,
    config: TrainConfig,
    info: ddp.DistInfo,
    weight: torch.Tensor | None,
    scaler: torch.amp.GradScaler | None,
    log: RunLog,
    steps_per_epoch: int,
) -> tuple[int, float]:
    """Train for one epoch. Returns (global step after the epoch, mean loss over ranks)."""
    device = torch.device(config.device)
    precision = resolve_precision(config.precision, device)
    channels_last = resolve_channels_last(config.channels_last, device)
    model.train()
    progress = None
    if info.is_main and config.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
                        unit="step", leave=False, dynamic_ncols=True)
    loss_sum = torch.zeros(2, dtype=torch.float64)  # (sum of batch losses, batches)
    window = [0.0, 0.0, 0.0]  # loss sum, images, batches since the last log line
    window_start = time.perf_counter()
    for i, (images, masks) in enumerate(loader):
        if i >= steps_per_epoch:
            break
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        masks = masks.to(device, non_blocking=True)
        with autocast(precision, device):
            logits = model(images)
        loss = segmentation_loss(logits.float(), masks, weight)
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
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training loss became {value} at step {step}; lower --lr (now {config.lr})"
            )
        loss_sum += torch.tensor([value, 1.0], dtype=torch.float64)
        window = [window[0] + value, window[1] + images.shape[0], window[2] + 1]
        if step % config.log_every == 0 or i + 1 == steps_per_epoch:
            # Sum the window over ranks (every rank reaches this line at the same steps, so
            # the collective matches up): mean loss per batch, images per second overall.
            stats = ddp.all_reduce_sum(torch.tensor(window, dtype=torch.float64))
            elapsed = max(time.perf_counter() - window_start, 1e-9)
            record = {
                "kind": "step", "epoch": epoch + 1, "step": step,
                "loss": stats[0].item() / max(stats[2].item(), 1.0),
                "lr": optimizer.param_groups[0]["lr"],
                "img_per_s": stats[1].item() / elapsed,
            }
            if info.is_main:
                log.append(record)
            if progress is not None:
                progress.set_postfix(loss=f"{record['loss']:.3f}",
                                     img_s=f"{record['img_per_s']:.1f}")
            window, window_start = [0.0, 0.0, 0.0], time.perf_counter()
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()
    total = ddp.all_reduce_sum(loss_sum)
    return step, total[0].item() / max(total[1].item(), 1.0)


# --------------------------------------------------------------------------------------------
# The run


def resolve_run_dir(config: TrainConfig) -> Path:
    """``--out``, else the resumed run's directory, else ``runs/<model>``."""
    if config.out is not None:
        return Path(config.out).expanduser()
    if config.resume is not None:
        resume = Path(config.resume).expanduser()
        return resume if resume.is_dir() else resume.parent
    return Path("runs") / config.model


def load_resume_checkpoint(config: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint ``--resume`` names (RUN_DIR → RUN_DIR/last.pt), or None."""
    if config.resume is None:
        return None
    path = Path(config.resume).expanduser()
    if not path.exists():
        raise InputError(
            f"--resume {path} does not exist; pass a run directory written by fcnkit train "
            "(or its last.pt)"
        )
    return ckpt_io.load_checkpoint(ckpt_io.resolve_checkpoint_path(path, name="last.pt"))


def resume_config(path: str | os.PathLike[str]) -> TrainConfig:
    """The TrainConfig stored in a run directory's last.pt (or a checkpoint file)."""
    file = ckpt_io.resolve_checkpoint_path(Path(path).expanduser(), name="last.pt")
    stored = ckpt_io.load_checkpoint(file).get("config")
    if not isinstance(stored, Mapping):
        raise InputError(f"checkpoint {file} holds no training config; pass --data and options")
    return TrainConfig.from_dict(stored)


def _check_resume_fits(ckpt: Mapping[str, Any], config: TrainConfig, num_classes: int) -> None:
    stored = ckpt["model_config"]
    wanted = {"name": config.model, "num_classes": num_classes, **model_options(config)}
    for key, value in wanted.items():
        if stored.get(key) != value:
            flag = {"name": "--model", "num_classes": "--data"}.get(key, f"--{key}")
            raise InputError(
                f"checkpoint {ckpt.get('path')} is a {ckpt_io.describe_checkpoint(ckpt)}, but "
                f"{flag} asks for {key}={value!r}; resume with the run's own settings or start "
                "a new run with another --out"
            )


def _configure_threads(config: TrainConfig) -> None:
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    elif torch.device(config.device).type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local)))


def _device_check(config: TrainConfig) -> None:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available; use --device cpu")


def train(
    config: TrainConfig, *, on_epoch: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Train (or resume) a model as ``config`` says; write the run directory.

    Args:
        config: the run's settings.
        on_epoch: optional callback, called on every rank after each epoch's validation
            with the epoch record (``metrics.jsonl``'s ``"epoch"`` line).

    Returns:
        ``{"run_dir", "last", "best", "best_miou", "epoch", "step", "train_loss",
        "metrics" (last validation), "world_size", "batch_size", "effective_batch_size",
        "time_s"}``; paths as strings.

    Raises:
        InputError: bad data, a checkpoint that does not fit, a missing ``--resume``.
    """
    _device_check(config)
    start_time = time.perf_counter()
    resume = load_resume_checkpoint(config)  # before creating anything: fail early
    info = ddp.init_distributed(config.device)
    try:
        return _train(config, info, resume, on_epoch, start_time)
    finally:
        ddp.cleanup_distributed()


def _train(
    config: TrainConfig,
    info: ddp.DistInfo,
    resume: dict[str, Any] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    start_time: float,
) -> dict[str, Any]:
    from fcnkit.models import build_model

    _configure_threads(config)
    device = torch.device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    run_dir = resolve_run_dir(config)

    # Data
    train_set = get_dataset(config, config.train_split, train=True)
    val_set = get_dataset(config, config.val_split, train=False)
    num_classes = int(train_set.num_classes)
    classes = list(getattr(train_set, "classes", [str(i) for i in range(num_classes)]))
    palette = [list(map(int, c)) for c in getattr(train_set, "palette", [])]
    train_loader, train_sampler, val_loader = get_loaders(config, train_set, val_set, info)
    batches = len(train_loader)
    steps_per_epoch = min(batches, config.max_steps_per_epoch or batches)
    if steps_per_epoch == 0:
        raise InputError(f"--data {config.data}: the training split yields no batch")
    total_steps = config.epochs * steps_per_epoch

    # Model: the same initial weights on every rank (seeded), then DDP.
    seed_everything(config.seed)
    options = model_options(config)
    try:
        model = build_model(config.model, num_classes=num_classes, **options)
    except (TypeError, KeyError) as exc:
        raise InputError(
            f"--model {config.model} with options {options}: {exc}; see fcnkit models"
        ) from None
    if resume is not None:
        _check_resume_fits(resume, config, num_classes)
        model.load_state_dict(resume["model_state"])
    precision = resolve_precision(config.precision, device)
    channels_last = resolve_channels_last(config.channels_last, device)
    if channels_last:  # weights keep their values; only the memory order changes
        model = model.to(memory_format=torch.channels_last)
    model = ddp.wrap_model(model, info, device, sync_bn=config.sync_bn)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(optimizer, total_steps, config.lr_power)
    # fp16 needs loss scaling against gradient underflow; bf16 has fp32's exponent range.
    use_scaler = precision.name == "fp16" and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    weight = class_weights_for(config, train_set, num_classes)
    if weight is not None:
        weight = weight.to(device)

    start_epoch, step, best_miou = 0, 0, -math.inf
    if resume is not None:
        start_epoch, step = int(resume.get("epoch", 0)), int(resume.get("step", 0))
        best_miou = float(resume.get("best_miou", -math.inf))
        if "optimizer_state" in resume:
            optimizer.load_state_dict(resume["optimizer_state"])
        if "scheduler_state" in resume:
            scheduler.load_state_dict(resume["scheduler_state"])
        if scaler is not None and resume.get("scaler_state"):
            scaler.load_state_dict(resume["scaler_state"])
        # A checkpoint from N processes resumed on M: steps per epoch differ, so restart the
        # schedule at this epoch's boundary in the new step count.
        position = start_epoch * steps_per_epoch
        if scheduler.last_epoch != position:
            scheduler.last_epoch = position
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * poly_factor(
                    position, total_steps, config.lr_power
                )
        if "rng_state" in resume:
            ckpt_io.restore_rng_state(resume["rng_state"])

    log = RunLog.resume(run_dir / "metrics.jsonl" if info.is_main else None, step)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.json", config.to_json())
        world = info.world_size
        print(
            f"fcnkit train: {config.model} ({options}) on {len(train_set)} train / "
            f"{len(val_set)} val images, {num_classes} classes; {world} process(es) x batch "
            f"{config.batch_size} = effective batch {world * config.batch_size}; "
            f"{steps_per_epoch} steps/epoch; epochs {start_epoch + 1}..{config.epochs}; "
            f"precision {precision.reason}; {'channels_last' if channels_last else 'NCHW'}; "
            f"run dir {run_dir}",
            file=sys.stderr, flush=True,
        )
    if info.is_main and start_epoch >= config.epochs:
        print(f"fcnkit train: {ckpt_io.describe_checkpoint(resume or {})} already trained "
              f"{start_epoch} of {config.epochs} epochs; pass a larger --epochs to continue",
              file=sys.stderr)
    bare = ddp.unwrap_model(model)
    metrics: dict[str, Any] = dict(resume.get("metrics", {})) if resume else {}
    train_loss = float("nan")
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
        seed_everything(config.seed, epoch + 1, info.rank)
        train_sampler.set_epoch(epoch)
        step, train_loss = train_one_epoch(
            model, train_loader, optimizer, scheduler, epoch=epoch, step=step, config=config,
            info=info, weight=weight, scaler=scaler, log=log, steps_per_epoch=steps_per_epoch,
        )
        metrics = validate(bare, val_loader, num_classes=num_classes, device=device,
                           classes=classes)
        miou = metrics.get("miou", float("nan"))
        is_best = math.isfinite(miou) and miou > best_miou
        if is_best:
            best_miou = miou
        record = {
            "kind": "epoch", "epoch": epoch + 1, "step": step, "train_loss": train_loss,
            "lr": optimizer.param_groups[0]["lr"], "time_s": time.perf_counter() - epoch_start,
            **{k: metrics[k] for k in ("pixel_acc", "mean_acc", "miou", "fwiou") if k in metrics},
        }
        if info.is_main:
            log.append(record)
            payload = {
                "format": ckpt_io.CHECKPOINT_FORMAT,
                "model_state": bare.state_dict(),
                "model_config": {"name": config.model, "num_classes": num_classes, **options},
                "classes": classes,
                "palette": palette,
                "config": config.to_dict(),
                "epoch": epoch + 1,
                "step": step,
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "scaler_state": scaler.state_dict() if scaler is not None else {},
                "rng_state": ckpt_io.capture_rng_state(),
                "metrics": metrics,
                "best_miou": best_miou,
                "world_size": info.world_size,
            }
            ckpt_io.save_checkpoint(run_dir / "last.pt", payload)
            if is_best:
                ckpt_io.save_checkpoint(run_dir / "best.pt", payload)
            _draw_curves(log.records, run_dir / "curves.png")
            print(
                f"epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f}, val mIoU "
                f"{miou:.4f}, pixel acc {metrics.get('pixel_acc', float('nan')):.4f} "
                f"({record['time_s']:.1f} s){' *best*' if is_best else ''}",
                file=sys.stderr, flush=True,
            )
        ddp.barrier()  # no rank starts the next epoch before rank 0 wrote the checkpoint
        if on_epoch is not None:
            on_epoch(record)

    skipped = int(getattr(train_set, "skipped", 0) or 0) + int(getattr(val_set, "skipped", 0) or 0)
    if skipped and info.is_main:
        print(f"fcnkit train: skipped {skipped} bad sample(s) (--skip-bad)", file=sys.stderr)
    return {
        "run_dir": str(run_dir),
        "skipped": skipped,
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


def validate(
    model: nn.Module, loader: DataLoader, *, num_classes: int, device: torch.device,
    classes: list[str],
) -> dict[str, Any]:
    """Evaluate the bare (un-wrapped) model; every rank gets the all-reduced metrics."""
    from fcnkit.engine.evaluate import evaluate

    cm = evaluate(model, loader, num_classes=num_classes, device=device)
    return _metrics_dict(cm, classes)


def _draw_curves(records: list[dict[str, Any]], path: Path) -> None:
    from fcnkit.viz.curves import plot_training_curves

    plot_training_curves(records, path)


def main(config: TrainConfig) -> int:
    """Entry point used by ``fcnkit train``: train and return the exit code."""
    train(config)
    return 0
