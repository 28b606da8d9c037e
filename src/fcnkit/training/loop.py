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
SGD with momentum and the "poly" learning-rate decay, or AdamW, or the paper's own caffe
recipe (:mod:`fcnkit.training.recipe`); validation (FCN metrics over the whole split) after
every epoch; ``last.pt`` every epoch and ``best.pt`` at the best val mIoU (schema:
:class:`fcnkit.runtime.checkpoint.TrainingCheckpoint`).

The loop, in reading order; everything a step needs travels in one
:class:`~fcnkit.training.setup.TrainState`, built by
:func:`fcnkit.training.setup.build_state`::

    train(config)                  lock the run directory, build the state, fit, summarise
      fit(state)                   the epochs: seed, train_one_epoch, validate, end_epoch
        train_one_epoch(state, e)  the steps of one epoch, a log line per window
          train_step(state, x, y)  forward (autocast), loss, backward, optimizer, schedule
          end_log_window(...)      the window's loss summed over ranks, read back once
        validate(model, loader)    the FCN metrics of the bare model (all-reduced)
        end_epoch(state, seconds)  metrics.jsonl, best.pt / last.pt, curves.png

The other rooms: the run directory (:mod:`fcnkit.training.rundir`: lock, resume, best/last,
``error.txt``), the run log (:mod:`fcnkit.training.runlog`)::

    config.json      the TrainConfig
    metrics.jsonl    one JSON line per log window ("kind": "step") and per epoch ("epoch")
    curves.png       loss, learning rate and validation metrics
    last.pt best.pt  checkpoints

The loss stays on the device during a log window and is read back once at its end (one
host sync per ``log_every`` steps, not one per step); a loss that is not finite stops the
run at that point (:class:`TrainingDiverged`).

Determinism: the model is initialised from ``seed``; at the start of every epoch the
python/numpy/torch generators are re-seeded from ``(seed, epoch, rank)`` and the sampler
shuffles with ``(seed, epoch)``. An epoch's randomness therefore depends only on where it
is in the run, which is why 2 epochs straight and 1 epoch + a resume give identical
weights on the CPU.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from fcnkit.atomic import remove_stale_temp_files
from fcnkit.data import open_dataset
from fcnkit.errors import InputError, warn
from fcnkit.inference.evaluate import evaluate
from fcnkit.inference.predict import predict_samples
from fcnkit.limits import check_training_crop
from fcnkit.runtime import allocator
from fcnkit.runtime import checkpoint as ckpt_io
from fcnkit.runtime import distributed as ddp
from fcnkit.runtime.checkpoint import TrainingCheckpoint
from fcnkit.runtime.device import resolve_device
from fcnkit.runtime.precision import autocast
from fcnkit.training.config import TrainConfig
from fcnkit.training.recipe import loss_reduction, training_loss
from fcnkit.training.rundir import (
    RunLock,
    clear_failure,
    load_resume_checkpoint,
    record_failure,
    resolve_run_dir,
    save_epoch,
)
from fcnkit.training.setup import TrainState, build_state, seed_everything
from fcnkit.training.tensorboard import PREDICTION_IMAGES, require_tensorboard

__all__ = [
    "TrainingDiverged",
    "end_epoch",
    "fit",
    "train",
    "train_one_epoch",
    "train_step",
    "validate",
]

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
            (:class:`TrainingDiverged`), an unknown ``FCNKIT_MALLOC``. A failure after the
            run directory was started leaves ``RUN_DIR/error.txt`` saying why.
    """
    start_time = time.perf_counter()
    check_training_crop(config.crop, config.batch_size)
    if config.tensorboard:
        require_tensorboard()  # before the run directory is touched
    allocator.keep_freed_memory()  # before the first step allocates
    device = resolve_device(config.device)
    resume = load_resume_checkpoint(config)  # before creating anything: fail early
    info = ddp.init_distributed(device)
    # Rank 0 writes the run directory: it holds the lock (a second run into the same
    # directory is refused) and removes temporaries a killed earlier run left there.
    lock = RunLock(resolve_run_dir(config)) if info.is_main else None
    try:
        if device.type == "cuda" and info.distributed:
            device = torch.device("cuda", info.local_rank)  # one GPU per process
        take_run_dir(lock, info)
        # Bad input found while the state is built (data, flags, a checkpoint that does not
        # fit) leaves the directory as it was: error.txt is for a run that started writing.
        state = build_state(config, info, device, resume)
        try:
            with state.log:
                fit(state, on_epoch)
            if info.is_main:
                clear_failure(state.run_dir)  # a resumed run that finished
            return summary(state, time.perf_counter() - start_time)
        except (Exception, KeyboardInterrupt, SystemExit) as exc:
            # SIGINT / SIGTERM (the command line's handlers; torchrun stops a failed group's
            # other ranks with SIGTERM) leave error.txt too.
            if lock is not None:
                record_failure(lock.run_dir, exc)
            raise
    finally:
        if lock is not None:
            lock.release()
        ddp.cleanup_distributed()


def take_run_dir(lock: RunLock | None, info: ddp.DistInfo) -> None:
    """Rank 0 takes the run directory's lock (and removes a killed run's temporaries);
    every rank learns whether it could, so that a refusal (another run holds it) stops all
    of them with one line each, not the others with a traceback from the next collective,
    which rank 0 never joins."""
    refusal: str | None = None
    if lock is not None:
        try:
            lock.acquire()
            remove_stale_temp_files(lock.run_dir)
        except InputError as exc:
            if not info.distributed:
                raise
            refusal = str(exc)
    if info.distributed:
        refusal = ddp.broadcast_object(refusal)  # type: ignore[assignment]
        if refusal is not None:
            raise InputError(refusal if info.is_main else f"rank 0 stopped: {refusal}")


def fit(state: TrainState, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> None:
    """The epochs from ``state.epoch`` to ``config.last_epoch`` (``stop_after``, else
    ``epochs``): train, validate, save.

    Every rank runs every epoch; only rank 0 writes. No rank starts an epoch before rank 0
    wrote the previous one's checkpoint.
    """
    config = state.config
    announce(state)
    for epoch in range(state.epoch, config.last_epoch):
        epoch_start = time.perf_counter()
        seed_everything(config.seed, epoch + 1, state.info.rank)
        state.train_sampler.set_epoch(epoch)
        state.train_loss = train_one_epoch(state, epoch)
        check_finite_weights(state.bare, config, state.step)  # never save NaN weights
        share_main_buffers(state)  # validate the model rank 0 saves
        state.metrics = validate(state.bare, state.val_loader, num_classes=state.num_classes,
                                 device=state.device, classes=state.classes)
        state.epoch = epoch + 1
        record = end_epoch(state, time.perf_counter() - epoch_start)
        ddp.barrier()
        if on_epoch is not None:
            on_epoch(record)


def share_main_buffers(state: TrainState) -> None:
    """Distributed run: copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts them at the start of each forward, then every rank updates its own copy
    on its own batch: after an epoch's last step the ranks hold different statistics, and
    the checkpoint holds rank 0's. Validation (sharded, all-reduced) must score that model,
    so that ``fcnkit eval`` of the checkpoint gives the logged metrics. Training is
    unchanged: the next forward would broadcast rank 0's buffers anyway.
    """
    if state.info.distributed:
        ddp.broadcast_buffers(state.bare)


def announce(state: TrainState) -> None:
    """The run's banner (rank 0), and a warning when a resumed run has nothing left to do."""
    config, info = state.config, state.info
    memory = allocator.keep_freed_memory()
    state.console.line(
        f"fcnkit train: {config.model} ({state.model_config}) on {len(state.train_set)} "
        f"train / {len(state.val_set)} val images; {info.world_size} process(es) x batch "
        f"{config.batch_size} = effective batch {info.world_size * config.batch_size}; "
        f"{state.steps_per_epoch} steps/epoch; epochs {state.epoch + 1}..{config.last_epoch}"
        f"{'' if config.stop_after is None else f' of {config.epochs}'}; "
        f"precision {state.precision.reason}; "
        f"{'channels_last' if state.channels_last else 'NCHW'}"
        f"{'; compiled' if state.compiled else ''}; {memory}; run dir {state.run_dir}"
    )
    if info.is_main and state.epoch >= config.last_epoch:
        described = ckpt_io.describe_checkpoint({"model_config": state.model_config})
        warn(f"{state.run_dir}: the {described} already trained {state.epoch} of "
             f"{config.last_epoch} epochs; nothing to do (ask for more epochs to continue)")


# --------------------------------------------------------------------------------------------
# One epoch


def train_one_epoch(state: TrainState, epoch: int) -> float:
    """Train epoch ``epoch`` (0-based): ``state.steps_per_epoch`` batches of
    ``state.train_loader``, advancing ``state.step``. Returns the mean loss over the ranks.

    Every ``config.log_every`` steps, and at the epoch's last step, the window's losses are
    summed over the ranks and read back to the host (the only host sync of the window),
    appended to ``state.log`` as a ``"step"`` record and shown by ``state.console``.

    Raises:
        TrainingDiverged: the loss became NaN or infinite (an InputError naming the likely
            causes: the settings, or NaN/inf pixels in the window's batches).
    """
    config, steps = state.config, state.steps_per_epoch
    state.model.train()
    state.console.start_epoch(epoch + 1, config.epochs, steps)
    window = LogWindow(state.device)
    epoch_loss, epoch_batches = 0.0, 0.0
    for i, (images, masks) in enumerate(itertools.islice(state.train_loader, steps)):
        images = images.to(state.device, non_blocking=True)
        if state.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        masks = masks.to(state.device, non_blocking=True)
        window.check_inputs(images)
        window.add(train_step(state, images, masks), images.shape[0])
        state.console.advance()
        if state.step % config.log_every == 0 or i + 1 == steps:
            loss_sum, batches = end_log_window(state, window, epoch, i + 1)
            epoch_loss, epoch_batches = epoch_loss + loss_sum, epoch_batches + batches
    state.console.end_epoch()
    return epoch_loss / max(epoch_batches, 1.0)


def train_step(state: TrainState, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """One optimizer step on a batch already on the device; returns the loss (not read back).

    The forward pass runs under ``state.precision``'s autocast (the loss is computed in
    float32, :func:`fcnkit.training.recipe.segmentation_loss`); ``state.scaler`` (fp16 only)
    scales the loss against gradient underflow. The schedule steps once per optimizer step.
    """
    config = state.config
    with autocast(state.precision, state.device):
        logits = compiled_call(state, images) if state.compiled else state.model(images)
    loss = training_loss(logits, masks, state.weight, aux_weight=config.aux_loss_weight,
                         reduction=loss_reduction(config))
    state.optimizer.zero_grad(set_to_none=True)
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        loss.backward()
        state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    return loss


def compiled_call(state: TrainState, images: torch.Tensor) -> Any:
    """``state.model(images)`` for a ``torch.compile``d model: a failure of the compiler
    (inductor, at the first call and at recompilations) becomes one line, not a traceback.

    Raises:
        InputError: the backend compiler failed.
    """
    # local: import cost (torch._dynamo loads the compiler stack; only compiled runs need it)
    from torch._dynamo.exc import BackendCompilerFailed

    try:
        return state.model(images)
    except BackendCompilerFailed as exc:
        inner = getattr(exc, "inner_exception", None) or exc  # the compiler's own error
        first = (str(inner).strip().splitlines() or [""])[0][:200]
        first = f"{type(inner).__name__}: {first}" if first else type(inner).__name__
        raise InputError(f"--compile: torch.compile could not compile the model ({first}); "
                         "train without --compile") from None


class LogWindow:
    """The steps since the last ``"step"`` record: their summed loss and the count of
    batches holding NaN/inf pixels, both kept on the device (no host sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.bad_inputs = torch.zeros((), dtype=torch.float64, device=device)
        self.reset()

    def reset(self) -> None:
        self.loss.zero_()
        self.bad_inputs.zero_()
        self.images = self.batches = 0
        self.start = time.perf_counter()

    def check_inputs(self, images: torch.Tensor) -> None:
        self.bad_inputs += (~torch.isfinite(images)).any()

    def add(self, loss: torch.Tensor, images: int) -> None:
        self.loss += loss.detach()
        self.images += images
        self.batches += 1

    def totals(self) -> tuple[float, float, float, float]:
        """``(loss sum, images, batches, bad batches)`` summed over the ranks, read back
        once (every rank reaches this at the same steps, so the collective matches up)."""
        totals = torch.stack([self.loss, self.loss.new_tensor(self.images),
                              self.loss.new_tensor(self.batches), self.bad_inputs])
        loss_sum, images, batches, bad = ddp.all_reduce_sum(totals).tolist()
        return loss_sum, images, batches, bad


def end_log_window(state: TrainState, window: LogWindow, epoch: int,
                   step_in_epoch: int) -> tuple[float, float]:
    """Close a log window: the ``"step"`` record (mean loss over the window's batches of
    every rank, lr, images per second) into the log and on the console. Returns the
    window's (loss sum, batches), and opens the next window."""
    loss_sum, images, batches, bad_inputs = window.totals()
    if not math.isfinite(loss_sum):
        raise TrainingDiverged(divergence_message(
            state.config, f"the loss became {loss_sum}", state.step, bad_data=bad_inputs > 0,
            weight=state.weight))
    record = {
        "kind": "step", "epoch": epoch + 1, "step": state.step,
        "loss": loss_sum / max(batches, 1.0),
        "lr": state.optimizer.param_groups[0]["lr"],
        "img_per_s": images / max(time.perf_counter() - window.start, 1e-9),
    }
    state.log.append(record)
    state.console.log_window(record, step_in_epoch)
    window.reset()
    return loss_sum, batches


# --------------------------------------------------------------------------------------------
# Validation and the epoch's files


@torch.no_grad()
def validate(
    model: nn.Module, loader: DataLoader, *, num_classes: int, device: torch.device,
    classes: list[str],
) -> dict[str, Any]:
    """Evaluate the bare (un-wrapped) model; every rank gets the all-reduced metrics:
    the FCN paper's scores, per-class IoU, class names and the confusion matrix."""
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


def end_epoch(state: TrainState, seconds: float) -> dict[str, Any]:
    """After epoch ``state.epoch``'s validation: update the best mIoU; rank 0 appends the
    ``"epoch"`` record, writes best.pt / last.pt / curves.png; the console's summary line.
    Returns the record."""
    config = state.config
    miou = state.metrics.get("miou", float("nan"))
    is_best = math.isfinite(miou) and miou > state.best_miou
    if is_best:
        state.best_miou, state.best_epoch = miou, state.epoch
    record = {
        "kind": "epoch", "epoch": state.epoch, "step": state.step,
        "train_loss": state.train_loss, "lr": state.optimizer.param_groups[0]["lr"],
        "time_s": seconds,
        **{k: state.metrics[k] for k in ("pixel_acc", "mean_acc", "miou", "fwiou")
           if k in state.metrics},
    }
    if state.info.is_main:
        state.log.append(record)
        if state.log.tensorboard is not None:
            log_val_predictions(state)
        save_epoch(state.run_dir, checkpoint_of(state), state.log, is_best=is_best)
    state.console.line(
        f"epoch {state.epoch}/{config.epochs}: train loss {state.train_loss:.4f}, val mIoU "
        f"{miou:.4f}, pixel acc {state.metrics.get('pixel_acc', float('nan')):.4f} "
        f"({seconds:.1f} s){' *best*' if is_best else ''}"
    )
    return record


def checkpoint_of(state: TrainState) -> TrainingCheckpoint:
    """The run as it stands: weights, optimizer/schedule/scaler/RNG states, metrics."""
    return TrainingCheckpoint(
        model_state=state.bare.state_dict(), model_config=state.model_config,
        classes=state.classes, palette=state.palette, config=state.config.to_dict(),
        epoch=state.epoch, step=state.step, optimizer_state=state.optimizer.state_dict(),
        scheduler_state=state.scheduler.state_dict(),
        scaler_state=state.scaler.state_dict() if state.scaler is not None else {},
        rng_state=ckpt_io.capture_rng_state(), metrics=state.metrics,
        best_miou=state.best_miou, best_epoch=state.best_epoch,
        world_size=state.info.world_size,
    )


def log_val_predictions(state: TrainState) -> None:
    """TensorBoard: the first validation images' predictions (rank 0, once per epoch)."""
    config = state.config
    dataset = open_dataset(config.data, config.val_split, skip_bad=config.skip_bad)
    samples = predict_samples(state.bare, dataset, PREDICTION_IMAGES,
                              num_classes=state.num_classes, device=state.device)
    state.log.tensorboard.log_predictions(samples, state.step, state.palette or None)
    state.bare.train()


def summary(state: TrainState, seconds: float) -> dict[str, Any]:
    """:func:`train`'s result (see there)."""
    run_dir, info, config = state.run_dir, state.info, state.config
    written = {name: str(run_dir / name) if (run_dir / name).is_file() else None
               for name in ("last.pt", "best.pt")}
    return {
        "run_dir": str(run_dir),
        "skipped": sum(int(getattr(ds, "skipped", 0) or 0)
                       for ds in (state.train_set, state.val_set)),
        "last": written["last.pt"],
        "best": written["best.pt"],
        "best_miou": state.best_miou,
        "epoch": state.epoch,
        "step": state.step,
        "train_loss": state.train_loss,
        "metrics": state.metrics,
        "world_size": info.world_size,
        "batch_size": config.batch_size,
        "effective_batch_size": config.batch_size * info.world_size,
        "time_s": seconds,
        # copied / skipped / new tensor counts of init_from (None without it)
        "init_from": state.init_report.counts() if state.init_report is not None else None,
    }


# --------------------------------------------------------------------------------------------
# Divergence


class TrainingDiverged(InputError):
    """The loss or the weights became NaN/inf: the settings (or the data) do not train."""


def check_finite_weights(model: nn.Module, config: TrainConfig, step: int) -> None:
    """Raise TrainingDiverged when a parameter or buffer is NaN/inf (never save such weights)."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise TrainingDiverged(divergence_message(config, f"weight {name} became NaN/inf",
                                                      step))


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
