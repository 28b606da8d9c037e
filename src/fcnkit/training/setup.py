"""Everything a training run needs, built from its config: the one :class:`TrainState`.

:func:`build_state` is the route from a :class:`~fcnkit.training.config.TrainConfig` to
the state the loop (:mod:`fcnkit.training.loop`) carries, in this order (the order is part
of the behaviour: the model is initialised right after :func:`seed_everything`)::

    threads             configure_threads
    preprocessing       load_init_weights, training_preprocessing (what the weights expect)
    data                get_dataset (train / val), get_loaders (sharded per rank)
    model               build_training_model (seeded; resumed or init_from weights; recipe)
    precision, layout   channels_last, DDP wrap
    optimization        optimizer (recipe), poly schedule, fp16 GradScaler, class weights
    compile             torch.compile of the step's model (``--compile``; the bare model
                        stays for validation and checkpoints)
    position            epoch, step, best mIoU and optimizer/RNG states of a resumed run
    run log             config.json, metrics.jsonl (rank 0)

Each piece is a plain function too, usable on its own (tests, notebooks).
"""

from __future__ import annotations

import math
import os
import random
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from fcnkit.data import open_dataset
from fcnkit.data.transforms import eval_transform, pad_collate, train_transform
from fcnkit.errors import InputError
from fcnkit.models import build_model
from fcnkit.models.preprocess import IMAGENET, PREPROCESSINGS, preprocessing_from
from fcnkit.models.registry import model_options as accepted_options
from fcnkit.models.weights import (
    fit_foreign_options,
    read_state_file,
    transfer_matching,
    weights_preprocessing,
)
from fcnkit.runtime import checkpoint as ckpt_io
from fcnkit.runtime import distributed as ddp
from fcnkit.runtime.checkpoint import TrainingCheckpoint
from fcnkit.runtime.precision import (
    FP32,
    Precision,
    resolve_channels_last,
    resolve_precision,
)
from fcnkit.training import recipe
from fcnkit.training.config import TrainConfig
from fcnkit.training.recipe import (
    build_scheduler,
    median_frequency_weights,
    parse_class_weights,
    set_schedule_position,
)
from fcnkit.training.rundir import (
    check_resume_fits,
    open_run_log,
    reconcile_best,
    resolve_run_dir,
)
from fcnkit.training.runlog import ConsoleProgress, RunLog

__all__ = [
    "TrainState",
    "build_state",
    "build_training_model",
    "compile_for_training",
    "resolve_compile",
    "class_weights_for",
    "configure_threads",
    "get_dataset",
    "get_loaders",
    "load_init_weights",
    "model_options",
    "restore_training_state",
    "seed_everything",
    "training_preprocessing",
]


@dataclass
class TrainState:
    """What the loop reads and updates: built once by :func:`build_state`.

    Only the first seven fields are required, so a test can train a toy model on a list
    of batches; the rest default to one fp32 process that writes nothing.
    """

    config: TrainConfig
    #: the model the step runs (DDP-wrapped in a distributed run)
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    #: (images, masks) batches; :func:`get_loaders`'s shuffled shard of the training split
    train_loader: Iterable[tuple[torch.Tensor, torch.Tensor]]
    steps_per_epoch: int
    device: torch.device
    #: the un-wrapped model (validation, checkpoints); None: ``model``
    bare: nn.Module | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    #: per-class cross-entropy weights on the device, or None
    weight: torch.Tensor | None = None
    #: fp16 loss scaling (CUDA only), or None
    scaler: torch.amp.GradScaler | None = None
    precision: Precision = FP32
    channels_last: bool = False
    #: the step runs ``torch.compile(model)``; ``bare`` is the un-compiled module
    compiled: bool = False
    train_sampler: DistributedSampler | None = None
    val_loader: DataLoader | None = None
    train_set: Any = None
    val_set: Any = None
    num_classes: int = 0
    classes: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)
    info: ddp.DistInfo = field(default_factory=ddp.DistInfo)
    run_dir: Path | None = None
    log: RunLog = field(default_factory=RunLog.in_memory)
    console: ConsoleProgress = field(default_factory=lambda: ConsoleProgress(enabled=False))
    #: :class:`fcnkit.models.weights.LoadReport` of ``init_from``, or None
    init_report: Any = None
    # Where the run is: fresh, or where the resumed checkpoint ended.
    epoch: int = 0  # epochs done
    step: int = 0  # optimizer steps done
    best_miou: float = -math.inf
    best_epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # the last validation's
    train_loss: float = math.nan  # the last epoch's mean

    def __post_init__(self) -> None:
        if self.bare is None:
            self.bare = ddp.unwrap_model(self.model)


def build_state(config: TrainConfig, info: ddp.DistInfo, device: torch.device,
                resume: dict[str, Any] | None) -> TrainState:
    """The state of a run that starts fresh or from the checkpoint ``resume`` (see the
    module docstring for the order). Rank 0 has created ``RUN_DIR/config.json`` and opened
    ``metrics.jsonl`` when it returns."""
    configure_threads(config)
    console = ConsoleProgress(enabled=info.is_main, bar=config.progress)
    init = load_init_weights(config) if resume is None else None
    preprocessing = training_preprocessing(config, resume, init)
    train_set = get_dataset(config, config.train_split, train=True, preprocessing=preprocessing)
    val_set = get_dataset(config, config.val_split, train=False, preprocessing=preprocessing)
    num_classes = int(train_set.num_classes)
    train_loader, train_sampler, val_loader = get_loaders(config, train_set, val_set, info)
    steps_per_epoch = min(len(train_loader), config.max_steps_per_epoch or len(train_loader))
    if steps_per_epoch == 0:
        raise InputError(f"data {config.data}: the training split yields no batch")

    model, model_config, init_report = build_training_model(
        config, num_classes, resume, init=init, preprocessing=preprocessing)
    if config.backbone_weights is not None and resume is None:
        console.line(f"fcnkit train: backbone {model_config.get('backbone', '')} weights from "
                     f"{config.backbone_weights}")
    if init_report is not None:
        counts = init_report.counts()
        console.line(f"fcnkit train: init from {config.init_from} ({init_report.layout}): "
                     f"copied {counts['copied']}, skipped {counts['skipped']}, new "
                     f"{counts['new']} tensors")
    channels_last = resolve_channels_last(config.channels_last, device)
    if channels_last:  # the weights keep their values; only their memory order changes
        model = model.to(memory_format=torch.channels_last)
    # "auto" times the model in fp32 and bf16 on a CPU with native bf16 (cached). Several
    # processes could measure differently, so a distributed run keeps the CPU rule.
    precision = resolve_precision(config.precision, device, channels_last=channels_last,
                                  model=model if info.world_size == 1 else None)
    model = ddp.wrap_model(model, info, device, sync_bn=config.sync_bn)
    optimizer = recipe.optimizer_for(model, config)
    scheduler = build_scheduler(optimizer, config.epochs * steps_per_epoch, config.lr_power)
    # fp16 needs loss scaling against gradient underflow; bf16 has fp32's exponent range.
    use_scaler = precision.name == "fp16" and device.type == "cuda"
    weight = class_weights_for(config, train_set, num_classes)
    bare = ddp.unwrap_model(model)
    compiled, compile_reason = resolve_compile(config.compile, device)
    if compiled:  # after the optimizer, which names the parameters of the bare model
        model = compile_for_training(model, device)
    if config.compile != "off":
        console.line(f"fcnkit train: compile {compile_reason}")

    state = TrainState(
        config=config, model=model, bare=bare, compiled=compiled, optimizer=optimizer,
        scheduler=scheduler,
        train_loader=train_loader, steps_per_epoch=steps_per_epoch, device=device,
        model_config=model_config, weight=weight.to(device) if weight is not None else None,
        scaler=torch.amp.GradScaler("cuda") if use_scaler else None, precision=precision,
        channels_last=channels_last, train_sampler=train_sampler, val_loader=val_loader,
        train_set=train_set, val_set=val_set, num_classes=num_classes,
        classes=list(getattr(train_set, "classes", [str(i) for i in range(num_classes)])),
        palette=[list(map(int, c)) for c in getattr(train_set, "palette", [])],
        info=info, run_dir=resolve_run_dir(config), console=console, init_report=init_report,
    )
    if resume:
        restore_training_state(state, TrainingCheckpoint.from_payload(resume),
                               resume.get("path", "the resume checkpoint"))
    state.log = open_run_log(state.run_dir, config, keep_up_to_step=state.step,
                             is_main=info.is_main, fresh=resume is None)
    return state


# --------------------------------------------------------------------------------------------
# Compile


def resolve_compile(choice: str, device: torch.device) -> tuple[bool, str]:
    """``(compile?, reason)`` for ``TrainConfig.compile``: ``"on"``, ``"off"``, or
    ``"auto"``, which stays off: compiled training has not been measured faster than eager
    on a quiet machine yet (``benchmarks/bench_train.py --compile`` does it; docs/benchmarks.md)."""
    if choice == "on":
        return True, f"on (torch.compile, inductor on {device.type})"
    if choice == "auto":
        return False, "auto: off (compiled training not yet measured faster than eager)"
    return False, "off"


def compile_for_training(model: nn.Module, device: torch.device) -> nn.Module:
    """``torch.compile(model)`` (inductor), after checking that inductor can build its CPU
    kernels here: a C++ compiler on the PATH (``$CXX``, ``c++``, ``g++`` or ``clang++``).

    Compilation itself happens at the first step; :func:`fcnkit.training.loop.train_step`
    turns a failure there into one line too.

    Raises:
        InputError: no C++ compiler for a CPU run.
    """
    if device.type == "cpu":
        names = [os.environ.get("CXX") or "", "c++", "g++", "clang++"]
        if not any(name and shutil.which(name) for name in names):
            raise InputError("--compile needs a C++ compiler for inductor's CPU kernels "
                             "(none of $CXX, c++, g++, clang++ is on the PATH); install one "
                             "or train without --compile")
    return torch.compile(model)


# --------------------------------------------------------------------------------------------
# Data


def get_dataset(config: TrainConfig, split: str, *, train: bool,
                preprocessing: Any = None) -> Any:
    """Open ``config.data``'s ``split`` with the training or the evaluation transform.

    Images are normalised as ``preprocessing`` (a
    :class:`fcnkit.models.preprocess.Preprocessing`; None: ImageNet) says. Training images
    are augmented when the recipe does (:func:`fcnkit.training.recipe.augments`).
    """
    normalize = preprocessing.transform() if preprocessing is not None else None
    if train and recipe.augments(config):
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
    return read_state_file(Path(config.init_from).expanduser(), "init_from")


def training_preprocessing(
    config: TrainConfig, resume: Mapping[str, Any] | None, init: Any
) -> Any:
    """What the trained model expects: the explicit model option, else the resumed run's,
    else the initial weights', else ImageNet's."""
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
    resumed checkpoint's weights when there is one, else the tensors of ``init`` that fit;
    then prepared as the recipe says (:func:`fcnkit.training.recipe.prepare_model`).

    Returns:
        ``(model, model_config, init_report)``; ``model_config`` records ``preprocessing``
        when it is not the default ImageNet one; ``init_report`` is the
        :class:`fcnkit.models.weights.LoadReport` of ``init`` (None without it).
    """
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
    # Pretrained backbone weights seed a fresh run; a resumed run has its own weights.
    # They stay out of model_config: a checkpoint holds the weights themselves.
    pretrained = ({"backbone_weights": config.backbone_weights}
                  if config.backbone_weights is not None and resume is None else {})
    try:
        model = build_model(**model_config, **pretrained)
    except (TypeError, KeyError) as exc:
        raise InputError(f"model {model_config}: {exc}; see fcnkit models") from None
    report = None
    if resume is not None:
        check_resume_fits(resume, model_config)
        model.load_state_dict(resume["model_state"])
    elif init is not None:
        report = transfer_matching(model, init)
        if not report.copied:
            raise InputError(_nothing_fits(config, init, model_config))
    recipe.prepare_model(model, config)
    return model, model_config, report


def _nothing_fits(config: TrainConfig, init: Any, model_config: Mapping[str, Any]) -> str:
    """The error for an ``init_from`` file none of whose tensors fits the model (training
    would silently start from scratch), pointing a classifier's file to --backbone-weights."""
    keys = set(init.state)
    # torchvision's ResNets end in fc, its VGG16 and MobileNetV3 in classifier.
    classifier = ({"conv1.weight", "fc.weight"} <= keys
                  or ("classifier.0.weight" in keys
                      and any(key.startswith("features.0.") for key in keys)))
    hint = ("it is an ImageNet classifier's state dict: pass it as --backbone-weights "
            f"{config.init_from}" if classifier else
            "pass a checkpoint of this model, or train from --backbone-weights")
    return (f"init_from: no tensor of {config.init_from} fits {model_config['name']} "
            f"(backbone {model_config.get('backbone', 'built in')}; 0 of "
            f"{len(keys)} copied); {hint}")


# --------------------------------------------------------------------------------------------
# Process-wide settings and a resumed run's position


def seed_everything(seed: int, epoch: int = 0, rank: int = 0) -> None:
    """Seed python, numpy and torch from ``(seed, epoch, rank)`` (SeedSequence mixing)."""
    seeds = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, dtype=np.uint32)
    value = int(seeds[0]) << 32 | int(seeds[1])
    random.seed(value)
    np.random.seed(int(seeds[0]))
    torch.manual_seed(value)


def configure_threads(config: TrainConfig) -> None:
    """torch's intra-op threads: ``config.threads``, else on the CPU the cores shared by
    the processes on this node (torchrun's ``LOCAL_WORLD_SIZE``)."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    elif torch.device(config.device).type == "cpu":
        local = ddp.env_int("LOCAL_WORLD_SIZE", 1, minimum=1)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local)))


#: Settings that shape the optimizer's state: changed on resume, it cannot be restored.
OPTIMIZER_FIELDS = ("optimizer", "recipe")


def _restore(source: Any, name: str, load: Any, changed: str = "") -> None:
    """Run ``load()``; what it raises on a field of another model or a damaged one is
    one line naming the checkpoint, the field and ``changed`` (the flags given that differ
    from the run's)."""
    try:
        load()
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
        why = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        advice = (f"this run asks for {changed}: drop those flags to resume" if changed
                  else "resume with the run's own settings")
        raise InputError(f"checkpoint {source}: its {name} does not fit this run ({why}); "
                         f"{advice}, or start a fresh run") from None


def _changed_flags(config: TrainConfig, stored: Mapping[str, Any], names: Iterable[str]) -> str:
    """``--optimizer adamw (the run's: sgd)`` for each of ``names`` that differs, or ''."""
    return ", ".join(f"--{name.replace('_', '-')} {getattr(config, name)} (the run's: "
                     f"{stored[name]})" for name in names
                     if name in stored and stored[name] != getattr(config, name))


def _load_optimizer(optimizer: torch.optim.Optimizer, stored: Mapping[str, Any]) -> None:
    """``optimizer.load_state_dict(stored)``, then check that every per-parameter buffer
    (momentum, Adam moments) has its parameter's shape: torch checks only the group sizes,
    and the optimizer of another model with as many tensors would fail at the first step."""
    optimizer.load_state_dict(stored)
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, buffer in optimizer.state.get(param, {}).items():
                if isinstance(buffer, torch.Tensor) and buffer.dim() and (
                        buffer.shape != param.shape):
                    raise ValueError(f"its {key} of shape {tuple(buffer.shape)} belongs to a "
                                     f"parameter of shape {tuple(param.shape)}")


def restore_training_state(state: TrainState, checkpoint: TrainingCheckpoint,
                           source: Any = "the resume checkpoint") -> None:
    """Continue where ``checkpoint`` ended: its epoch, step, best mIoU (repaired from
    ``best.pt`` after a crash, :func:`fcnkit.training.rundir.reconcile_best`) and last
    metrics; its optimizer, schedule, AMP scaler and RNG states.

    The schedule is then moved to the epoch boundary counted in this run's steps per
    epoch (they differ when a run saved with N processes resumes on M). A state that does
    not fit (the optimizer of another model) is one :class:`InputError` line naming
    ``source`` (the checkpoint file) and the field.
    """
    config = state.config
    state.epoch, state.step = checkpoint.epoch, checkpoint.step
    state.best_miou, state.best_epoch = reconcile_best(
        state.run_dir, checkpoint.best_miou, checkpoint.best_epoch, checkpoint.epoch)
    state.metrics = dict(checkpoint.metrics)
    if checkpoint.optimizer_state:
        changed = _changed_flags(config, checkpoint.config or {}, OPTIMIZER_FIELDS)
        _restore(source, "optimizer_state", lambda: _load_optimizer(
            state.optimizer, checkpoint.optimizer_state), changed)
    if checkpoint.scheduler_state:
        _restore(source, "scheduler_state",
                 lambda: state.scheduler.load_state_dict(checkpoint.scheduler_state))
    if state.scaler is not None and checkpoint.scaler_state:
        _restore(source, "scaler_state",
                 lambda: state.scaler.load_state_dict(checkpoint.scaler_state))
    if checkpoint.rng_state:
        _restore(source, "rng_state", lambda: ckpt_io.restore_rng_state(checkpoint.rng_state))
    set_schedule_position(state.scheduler, state.optimizer,
                          state.epoch * state.steps_per_epoch,
                          config.epochs * state.steps_per_epoch, config.lr_power)
