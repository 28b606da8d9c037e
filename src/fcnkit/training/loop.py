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

    from fcnkit.training.config import TrainConfig
    from fcnkit.training.loop import train
    result = train(TrainConfig(data="synth:DIR", epochs=2, out="runs/x"))

The recipe follows Long, Shelhamer & Darrell (2015) and torchvision's
``references/segmentation/train.py``: per-pixel cross-entropy that ignores the void label,
SGD with momentum and the "poly" learning-rate decay, or AdamW (:mod:`fcnkit.training.recipe`);
validation (FCN metrics over the whole split) after every epoch; ``last.pt`` every epoch
and ``best.pt`` at the best val mIoU
(schema: :class:`fcnkit.runtime.checkpoint.TrainingCheckpoint`).

This module is the loop: :func:`get_dataset`, :func:`get_loaders`, :func:`train_one_epoch`,
:func:`validate` and :func:`train`, which ties them together. What it writes besides the
checkpoints is the run log (:mod:`fcnkit.training.runlog`)::

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
is in the run, which is why 2 epochs straight and 1 epoch + a resume give identical
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
from fcnkit.errors import InputError, warn
from fcnkit.runtime import checkpoint as ckpt_io
from fcnkit.runtime import distributed as ddp
from fcnkit.runtime.checkpoint import TrainingCheckpoint
from fcnkit.runtime.device import resolve_device
from fcnkit.runtime.precision import (
    FP32,
    Precision,
    autocast,
    resolve_channels_last,
    resolve_precision,
)
from fcnkit.training.config import AUTO_RESUME, TrainConfig
from fcnkit.training.recipe import (
    build_caffe_optimizer,
    build_optimizer,
    build_scheduler,
    median_frequency_weights,
    parse_class_weights,
    poly_factor,
    segmentation_loss,
    set_schedule_position,
    training_loss,
)
from fcnkit.training.runlog import ConsoleProgress, RunLog, draw_curves

# Re-exported: the loss and schedule the loop uses live in training.recipe.
__all__ = [
    "TrainingDiverged",
    "auto_resume_path",
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


def get_dataset(config: TrainConfig, split: str, *, train: bool,
                preprocessing: Any = None) -> Any:
    """Open ``config.data``'s ``split`` with the training or the evaluation transform.

    Images are normalised as ``preprocessing`` (a
    :class:`fcnkit.models.preprocess.Preprocessing`; None: ImageNet) says. The caffe recipe
    trains on whole images without augmentation, as the FCN paper did.
    """
    from fcnkit.data import open_dataset
    from fcnkit.data.transforms import eval_transform, train_transform

    normalize = preprocessing.transform() if preprocessing is not None else None
    if train and config.recipe != "caffe":
        transform = train_transform(
            crop_size=config.crop,
            scale_range=config.scale_range,
            hflip=config.hflip,
            color_jitter=config.color_jitter,
            normalize=normalize,
        )
    else:
        transform = eval_transform(normalize)
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
    masks (:func:`fcnkit.training.recipe.median_frequency_weights`). Else one weight per class.
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
    if config.width is not None:
        options["width"] = config.width
    options.update(config.model_options)
    return options


def load_init_weights(config: TrainConfig) -> Any:
    """The weights ``config.init_from`` names (a :class:`fcnkit.models.weights.WeightsFile`),
    or None. A fcnkit checkpoint's or .safetensors' metadata comes along."""
    if config.init_from is None:
        return None
    from fcnkit.models.weights import read_state_file

    return read_state_file(Path(config.init_from).expanduser(), "init_from")


def training_preprocessing(
    config: TrainConfig, resume: Mapping[str, Any] | None, init: Any
) -> Any:
    """What the trained model expects: the explicit model option, else the resumed run's,
    else the initial weights', else ImageNet's."""
    from fcnkit.models.preprocess import preprocessing_from
    from fcnkit.models.weights import weights_preprocessing

    explicit = config.model_options.get("preprocessing")
    if explicit is not None:
        return preprocessing_from(explicit)
    if resume is not None:
        return preprocessing_from(resume["model_config"].get("preprocessing"))
    if init is not None:
        return weights_preprocessing(init)
    return preprocessing_from(None)


def build_training_model(
    config: TrainConfig, num_classes: int, resume: Mapping[str, Any] | None,
    *, init: Any = None, preprocessing: Any = None,
) -> tuple[nn.Module, dict[str, Any], Any]:
    """The model to train, seeded (the same initial weights on every rank), with the
    resumed checkpoint's weights when there is one, else the tensors of ``init`` that fit.

    Returns:
        ``(model, model_config, init_report)``; ``model_config`` records ``preprocessing``
        when it is not the default ImageNet one; ``init_report`` is the
        :class:`fcnkit.models.weights.LoadReport` of ``init`` (None without it).
    """
    from fcnkit.models import build_model
    from fcnkit.models.preprocess import IMAGENET, PREPROCESSINGS
    from fcnkit.models.weights import fit_foreign_options, transfer_matching

    seed_everything(config.seed)
    options = model_options(config)
    if init is not None and resume is None:
        # A torchvision / pytorch-fcn file fills in the options it needs (dilations,
        # upsample, faithful ...); options given must agree with it.
        _, options = fit_foreign_options(init, config.model, options, transfer=True,
                                         option="init_from")
    model_config = {"name": config.model, "num_classes": num_classes, **options}
    if preprocessing is not None and preprocessing != IMAGENET:
        named = PREPROCESSINGS.get(preprocessing.name) == preprocessing
        model_config["preprocessing"] = preprocessing.name if named else preprocessing.to_dict()
    try:
        model = build_model(**model_config)
    except (TypeError, KeyError) as exc:
        raise InputError(f"model {model_config}: {exc}; see fcnkit models") from None
    report = None
    if resume is not None:
        _check_resume_fits(resume, model_config)
        model.load_state_dict(resume["model_state"])
    elif init is not None:
        report = transfer_matching(model, init)
    if config.recipe == "caffe":
        # Caffe's upsampling Deconvolutions are frozen (lr_mult: 0).
        for module in model.modules():
            if isinstance(module, nn.ConvTranspose2d):
                module.weight.requires_grad_(False)
    return model, model_config, report


def seed_everything(seed: int, epoch: int = 0, rank: int = 0) -> None:
    """Seed python, numpy and torch from ``(seed, epoch, rank)`` (SeedSequence mixing)."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, dtype=np.uint32)
    value = int(state[0]) << 32 | int(state[1])
    random.seed(value)
    np.random.seed(int(state[0]))
    torch.manual_seed(value)


# --------------------------------------------------------------------------------------------
# Divergence


class TrainingDiverged(InputError):
    """The loss or the weights became NaN/inf: the settings (or the data) do not train."""


def divergence_message(config: TrainConfig, what: str, step: int, *, bad_data: bool = False,
                       weight: torch.Tensor | None = None) -> str:
    """One line: what diverged, where, and the likely causes among this run's settings.

    The thresholds are where common recipes stop (FCN: SGD lr 1e-4 unnormalised / ~1e-2
    normalised loss, momentum 0.9-0.99, weight decay 5e-4; AdamW lr ~1e-3), not hard laws.
    """
    causes = []
    if bad_data:
        causes.append("the data: a batch held NaN/inf pixel values")
    high_lr = 0.1 if config.optimizer == "sgd" else 0.01
    if config.lr > high_lr:
        causes.append(f"lr={config.lr:g} is high for {config.optimizer} (try <= {high_lr:g})")
    if config.optimizer == "sgd" and config.momentum >= 0.99:
        causes.append(f"momentum={config.momentum:g} is close to 1")
    if config.weight_decay > 0.01:
        causes.append(f"weight_decay={config.weight_decay:g} is large (typical 1e-4..5e-4)")
    if weight is not None and float(weight.max()) > 100 * max(float(weight.min()), 1e-12):
        causes.append("class_weights span more than 100x")
    if not causes:
        causes.append(f"lr={config.lr:g} may still be too high for this model and data, or "
                      "the data holds extreme values")
    return (f"training diverged: {what} at step {step}; likely cause: {'; '.join(causes)}. "
            "The checkpoints keep the last finite epoch")


def _test_kill_step(rank: int) -> int | None:
    """Test hook for elastic restarts: ``FCNKIT_TEST_KILL_AT_STEP=RANK:STEP`` makes rank
    ``RANK`` exit abruptly (``os._exit``) after global step ``STEP``, on torchrun's first
    attempt only (``TORCHELASTIC_RESTART_COUNT`` 0), so the restarted group can finish.
    Returns that step for this rank, else None."""
    spec = os.environ.get("FCNKIT_TEST_KILL_AT_STEP")
    if not spec or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return None
    target, _, at = spec.partition(":")
    return int(at) if int(target) == rank else None


def _check_finite_weights(model: nn.Module, config: TrainConfig, step: int) -> None:
    """Raise TrainingDiverged when a parameter or buffer is NaN/inf (never save such weights)."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise TrainingDiverged(divergence_message(config, f"weight {name} became NaN/inf",
                                                      step))


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
    precision: Precision | None = None,
    channels_last: bool = False,
    rank: int = 0,
) -> tuple[int, float]:
    """Train for ``steps`` batches of ``loader``. Returns (global step, mean loss over ranks).

    The forward pass runs under ``precision``'s autocast (None: fp32; the loss is computed
    in float32) and, with ``channels_last``, on NHWC batches (the model converted by the
    caller). ``scaler`` (fp16 only) scales the loss against gradient underflow.

    Every ``config.log_every`` steps, and at the epoch's last step, the window's losses are
    summed over the ranks and read back to the host (the only host sync of the window),
    appended to ``log`` as a ``"step"`` record and shown by ``console``.

    Raises:
        TrainingDiverged: the loss became NaN or infinite (an InputError naming the likely
            causes: the settings, or NaN/inf pixels in the window's batches).
    """
    console = console or ConsoleProgress(enabled=False)
    model.train()
    console.start_epoch(epoch + 1, config.epochs, steps)
    window_loss = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device
    # Non-finite input values seen in the window, counted on the device (read with the loss).
    window_bad_inputs = torch.zeros((), dtype=torch.float64, device=device)
    kill_at = _test_kill_step(rank)
    window_images = window_batches = 0
    epoch_loss, epoch_batches = 0.0, 0.0
    window_start = time.perf_counter()
    for i, (images, masks) in enumerate(itertools.islice(loader, steps)):
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        masks = masks.to(device, non_blocking=True)
        window_bad_inputs += (~torch.isfinite(images)).any()
        with autocast(precision or FP32, device):
            logits = model(images)
        # The loss is computed in fp32 whatever the autocast precision (optim.segmentation_loss).
        loss = training_loss(logits, masks, weight, aux_weight=config.aux_loss_weight,
                             reduction="sum" if config.recipe == "caffe" else "mean")
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
        if kill_at == step:
            os._exit(17)  # the elastic-restart test's simulated crash (no cleanup at all)
        if step % config.log_every != 0 and i + 1 != steps:
            continue
        # End of a log window: sum over ranks (every rank reaches this line at the same
        # steps, so the collective matches up) and read back once.
        totals = torch.stack([window_loss, window_loss.new_tensor(window_images),
                              window_loss.new_tensor(window_batches), window_bad_inputs])
        loss_sum, images_seen, batches_seen, bad_inputs = ddp.all_reduce_sum(totals).tolist()
        if not math.isfinite(loss_sum):
            raise TrainingDiverged(divergence_message(
                config, f"the loss became {loss_sum}", step, bad_data=bad_inputs > 0,
                weight=weight))
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
        window_bad_inputs.zero_()
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
    from fcnkit.inference.evaluate import evaluate

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
        "effective_batch_size", "time_s", "init_from"}``; paths as strings.

    Raises:
        InputError: bad data, a device that is absent, a checkpoint that does not fit, a
            missing resume checkpoint, a crop x batch above the memory budget
            (:func:`fcnkit.limits.check_training_crop`), a run directory another run holds
            (:class:`fcnkit.training.rundir.RunLock`), a loss or weights that diverged
            (:class:`TrainingDiverged`). A failure after the run directory was started
            leaves ``RUN_DIR/error.txt`` saying why.
    """
    from fcnkit.atomic import remove_stale_temp_files
    from fcnkit.limits import check_training_crop
    from fcnkit.training.rundir import RunLock

    start_time = time.perf_counter()
    check_training_crop(config.crop, config.batch_size)
    device = resolve_device(config.device)
    resume = load_resume_checkpoint(config)  # before creating anything: fail early
    info = ddp.init_distributed(device)
    # Rank 0 writes the run directory: it holds the lock (a second run into the same
    # directory is refused) and removes temporaries a killed earlier run left there.
    lock = RunLock(resolve_run_dir(config)) if info.is_main else None
    try:
        if device.type == "cuda" and info.distributed:
            device = torch.device("cuda", info.local_rank)  # one GPU per process
        if lock is not None:
            lock.acquire()
            remove_stale_temp_files(lock.run_dir)
        try:
            return _run(config, info, device, resume, on_epoch, start_time)
        except Exception as exc:
            if lock is not None:
                _record_failure(lock.run_dir, exc)
            raise
    finally:
        if lock is not None:
            lock.release()
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

    # Data, normalised as the model's weights expect
    init = load_init_weights(config) if resume is None else None
    preprocessing = training_preprocessing(config, resume, init)
    train_set = get_dataset(config, config.train_split, train=True,
                            preprocessing=preprocessing)
    val_set = get_dataset(config, config.val_split, train=False, preprocessing=preprocessing)
    num_classes = int(train_set.num_classes)
    classes = list(getattr(train_set, "classes", [str(i) for i in range(num_classes)]))
    palette = [list(map(int, c)) for c in getattr(train_set, "palette", [])]
    train_loader, train_sampler, val_loader = get_loaders(config, train_set, val_set, info)
    steps_per_epoch = min(len(train_loader), config.max_steps_per_epoch or len(train_loader))
    if steps_per_epoch == 0:
        raise InputError(f"data {config.data}: the training split yields no batch")
    total_steps = config.epochs * steps_per_epoch

    # Model, loss, optimizer, schedule
    model, model_config, init_report = build_training_model(
        config, num_classes, resume, init=init, preprocessing=preprocessing)
    if init_report is not None:
        counts = init_report.counts()
        console.line(f"fcnkit train: init from {config.init_from} ({init_report.layout}): "
                     f"copied {counts['copied']}, skipped {counts['skipped']}, new "
                     f"{counts['new']} tensors")
    precision = resolve_precision(config.precision, device)
    channels_last = resolve_channels_last(config.channels_last, device)
    if channels_last:  # the weights keep their values; only their memory order changes
        model = model.to(memory_format=torch.channels_last)
    model = ddp.wrap_model(model, info, device, sync_bn=config.sync_bn)
    bare = ddp.unwrap_model(model)
    if config.recipe == "caffe":
        optimizer = build_caffe_optimizer(model, lr=config.lr, momentum=config.momentum,
                                          weight_decay=config.weight_decay)
    else:
        optimizer = build_optimizer(model, name=config.optimizer, lr=config.lr,
                                    momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = build_scheduler(optimizer, total_steps, config.lr_power)
    # fp16 needs loss scaling against gradient underflow; bf16 has fp32's exponent range.
    use_scaler = precision.name == "fp16" and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    weight = class_weights_for(config, train_set, num_classes)
    if weight is not None:
        weight = weight.to(device)

    # Where the run starts: epoch 0, or where the resumed checkpoint ended
    state = TrainingCheckpoint.from_payload(resume) if resume else None
    start_epoch, step = (state.epoch, state.step) if state else (0, 0)
    best_miou = state.best_miou if state else -math.inf
    best_epoch = state.best_epoch if state else None
    if state is not None:  # best.pt may be newer or older than last.pt says (a crash)
        best_miou, best_epoch = _reconcile_best(run_dir, best_miou, best_epoch, start_epoch)
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
        f"precision {precision.reason}; {'channels_last' if channels_last else 'NCHW'}; "
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
                scaler=scaler, log=log, console=console, precision=precision,
                channels_last=channels_last, rank=info.rank,
            )
            _check_finite_weights(bare, config, step)  # no checkpoint ever holds NaN weights
            metrics = validate(bare, val_loader, num_classes=num_classes, device=device,
                               classes=classes)
            miou = metrics.get("miou", float("nan"))
            is_best = math.isfinite(miou) and miou > best_miou
            if is_best:
                best_miou, best_epoch = miou, epoch + 1
            record = {
                "kind": "epoch", "epoch": epoch + 1, "step": step, "train_loss": train_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "time_s": time.perf_counter() - epoch_start,
                **{k: metrics[k] for k in ("pixel_acc", "mean_acc", "miou", "fwiou")
                   if k in metrics},
            }
            if info.is_main:
                log.append(record)
                if log.tensorboard is not None:
                    log_val_predictions(log.tensorboard, bare, config, step,
                                        num_classes=num_classes, device=device, palette=palette)
                checkpoint = TrainingCheckpoint(
                    model_state=bare.state_dict(), model_config=model_config,
                    classes=classes, palette=palette, config=config.to_dict(),
                    epoch=epoch + 1, step=step, optimizer_state=optimizer.state_dict(),
                    scheduler_state=scheduler.state_dict(),
                    scaler_state=scaler.state_dict() if scaler is not None else {},
                    rng_state=ckpt_io.capture_rng_state(), metrics=metrics,
                    best_miou=best_miou, best_epoch=best_epoch, world_size=info.world_size,
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

    if info.is_main:
        (run_dir / "error.txt").unlink(missing_ok=True)  # a resumed run that finished
    written = {name: str(run_dir / name) if (run_dir / name).is_file() else None
               for name in ("last.pt", "best.pt")}
    return {
        "run_dir": str(run_dir),
        "skipped": sum(int(getattr(ds, "skipped", 0) or 0) for ds in (train_set, val_set)),
        "last": written["last.pt"],
        "best": written["best.pt"],
        "best_miou": best_miou,
        "epoch": config.epochs,
        "step": step,
        "train_loss": train_loss,
        "metrics": metrics,
        "world_size": info.world_size,
        "batch_size": config.batch_size,
        "effective_batch_size": config.batch_size * info.world_size,
        "time_s": time.perf_counter() - start_time,
        # copied / skipped / new tensor counts of init_from (None without it)
        "init_from": init_report.counts() if init_report is not None else None,
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
    return RunLog.open(run_dir / "metrics.jsonl", keep_up_to_step=keep_up_to_step,
                       tensorboard_dir=run_dir / "tensorboard" if config.tensorboard else None)


def log_val_predictions(board: Any, model: nn.Module, config: TrainConfig, step: int, *,
                        num_classes: int, device: torch.device, palette: list[Any]) -> None:
    """TensorBoard: the first validation images' predictions (rank 0, once per epoch)."""
    from fcnkit.data import open_dataset
    from fcnkit.inference.predict import predict_samples
    from fcnkit.training.tensorboard import PREDICTION_IMAGES

    dataset = open_dataset(config.data, config.val_split, skip_bad=config.skip_bad)
    samples = predict_samples(model, dataset, PREDICTION_IMAGES, num_classes=num_classes,
                              device=device)
    board.log_predictions(samples, step, palette or None)
    model.train()


def save_epoch(run_dir: Path, checkpoint: TrainingCheckpoint, log: RunLog, *,
               is_best: bool) -> None:
    """An epoch's files (rank 0): ``best.pt`` when it is the best so far, then ``last.pt``,
    then ``curves.png``.

    Best before last: a crash between the two leaves ``last.pt`` one epoch behind, so the
    resume re-runs that epoch and rewrites both (:func:`_reconcile_best` ignores the newer
    ``best.pt``). The other order would leave ``best.pt`` stale for good: ``last.pt`` would
    say the epoch was done.
    """
    payload = checkpoint.to_payload()
    if is_best:
        ckpt_io.save_checkpoint(run_dir / "best.pt", payload)
    ckpt_io.save_checkpoint(run_dir / "last.pt", payload)
    draw_curves(log.records, run_dir / "curves.png")


# --------------------------------------------------------------------------------------------
# Resuming


def resolve_run_dir(config: TrainConfig) -> Path:
    """``config.out``, else the resumed run's directory, else ``runs/<model>``."""
    if config.out is not None:
        return Path(config.out).expanduser()
    if config.resume is not None and config.resume != AUTO_RESUME:
        resume = Path(config.resume).expanduser()
        return resume if resume.is_dir() else resume.parent
    return Path("runs") / config.model


def auto_resume_path(config: TrainConfig) -> Path | None:
    """For ``resume="auto"``: the run directory's ``last.pt`` if it exists, else None."""
    last = resolve_run_dir(config) / "last.pt"
    return last if last.is_file() else None


def load_resume_checkpoint(config: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint ``config.resume`` names (RUN_DIR → RUN_DIR/last.pt), or None.

    ``resume="auto"`` resumes from the run directory's ``last.pt`` when there is one and
    starts fresh otherwise (what a restarted torchrun worker group needs).
    """
    if config.resume is None:
        return None
    if config.resume == AUTO_RESUME:
        found = auto_resume_path(config)
        return ckpt_io.load_checkpoint(found) if found is not None else None
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
    try:
        return TrainConfig.from_dict(stored)
    except (InputError, TypeError) as exc:
        raise InputError(f"checkpoint {file} holds an unusable training config ({exc}); "
                         "start a fresh run or pass a checkpoint written by fcnkit train"
                         ) from None


def _check_resume_fits(ckpt: Mapping[str, Any], model_config: Mapping[str, Any]) -> None:
    stored = ckpt["model_config"]
    for key, value in model_config.items():
        if stored.get(key) != value:
            raise InputError(
                f"checkpoint {ckpt.get('path')} is a {ckpt_io.describe_checkpoint(ckpt)}, but "
                f"this run asks for {key}={value!r}; resume with the run's own settings or "
                "start a new run in another directory"
            )


def _record_failure(run_dir: Path, exc: BaseException) -> None:
    """A run that had started writing its directory says why it stopped: ``error.txt``.

    The checkpoints are the last complete epoch's; ``--resume`` continues from there once
    the cause (a bad sample, a diverging setting) is fixed.
    """
    if not (run_dir / "config.json").is_file():
        return  # nothing written yet: leave no directory behind
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    text = (f"{when} training stopped: {type(exc).__name__}: {str(exc).strip()}\n"
            f"last.pt/best.pt hold the last complete epoch; fix the cause and resume with "
            f"--resume {run_dir}\n")
    try:
        write_text_atomic(run_dir / "error.txt", text)
    except OSError:
        pass


def _reconcile_best(run_dir: Path, best_miou: float, best_epoch: int | None,
                    start_epoch: int) -> tuple[float, int | None]:
    """The best mIoU / epoch to resume with, repaired from ``best.pt`` when it is newer.

    A ``best.pt`` written for an epoch that ``last.pt`` does not include yet (a crash
    between the two writes) is dropped from the comparison: that epoch is trained again and
    its result decides. A ``best.pt`` at or before ``last.pt``'s epoch with a higher mIoU
    than ``last.pt`` records (an older fcnkit wrote last.pt first) is trusted.
    """
    path = run_dir / "best.pt"
    if not path.is_file():
        return best_miou, best_epoch
    try:
        stored = ckpt_io.load_checkpoint(path)
    except InputError:
        return best_miou, best_epoch
    epoch = int(stored.get("epoch", 0) or 0)
    miou = float((stored.get("metrics") or {}).get("miou", stored.get("best_miou", -math.inf)))
    if epoch > start_epoch:
        return best_miou, best_epoch
    if math.isfinite(miou) and miou > best_miou:
        return miou, epoch
    return best_miou, best_epoch


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
