"""The training configuration: one frozen dataclass, filled by argparse, saved as JSON.

``TrainConfig`` is written to ``RUN_DIR/config.json`` and, as a plain dict, into every
checkpoint (``asdict`` keeps only str/int/float/bool/None/tuples, which
``torch.load(weights_only=True)`` reads back). Its checks raise
:class:`~fcnkit.errors.InputError` naming the field (``epochs=0 must be at least 1``); the
command line checks its flags while parsing, so these messages reach library callers.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fcnkit.errors import InputError

OPTIMIZERS = ("sgd", "adamw")
# Training devices: the CPU, or CUDA (the current GPU, or GPU N). Checked as text so the
# config stays torch-free; train() asks torch whether the device exists.
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``fcnkit train`` needs; every field is a ``--flag`` of the same name.

    Attributes:
        data: dataset spec for ``fcnkit.data.open_dataset`` (``synth:DIR``, ``voc:ROOT``,
            ``folder:ROOT`` or a bare directory).
        train_split, val_split: split names (``ImageSets/Segmentation/<split>.txt``).
        model: registry name (``fcnkit.models.list_models()``), e.g. ``"fcn8s"``.
        backbone: backbone name passed to ``build_model`` (None: the model's default).
        upsample: upsampling head option passed to ``build_model`` (None: default).
        epochs: total epochs; the poly LR schedule spans all of them.
        batch_size: images per process per step (effective batch = batch_size x world size).
        lr: base learning rate (for the effective batch size; scale it yourself when the
            number of processes changes, see docs/distributed.md).
        optimizer: ``"sgd"`` (momentum, as in Long et al. 2015) or ``"adamw"``.
        momentum, weight_decay: optimizer hyper-parameters (momentum: SGD only).
        lr_power: exponent of the poly decay ``lr = base_lr * (1 - step / total) ** power``.
        crop: training crop (height, width) in pixels, after random scaling.
        scale_range: random rescale factors (min, max) applied before cropping.
        hflip: random horizontal flips.
        color_jitter: random brightness/contrast/saturation/hue jitter.
        class_weights: None (unweighted), ``"auto"`` (median-frequency balancing over the
            training masks) or comma-separated per-class weights.
        out: run directory (None: the resumed run's directory, else ``runs/<model>``).
        resume: run directory or checkpoint to continue from (None: start fresh).
        seed: seed of model initialisation, shuffling and augmentation.
        workers: DataLoader worker processes per training process.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (under DDP each process uses
            ``cuda:LOCAL_RANK``).
        amp: mixed precision (float16 autocast + GradScaler); used on CUDA only.
        skip_bad: skip unreadable/inconsistent samples with a warning instead of failing.
        sync_bn: SyncBatchNorm across processes (distributed CUDA runs only).
        log_every: write a ``metrics.jsonl`` step line every this many optimizer steps.
        max_steps_per_epoch: stop each epoch after this many steps (None: the whole split).
        threads: torch intra-op threads per process (None: cores / local processes).
        progress: tqdm progress bar on rank 0.
        model_options: further keyword options for ``build_model`` (plain values only).
    """

    data: str
    train_split: str = "train"
    val_split: str = "val"
    model: str = "fcn8s"
    backbone: str | None = "resnet18"
    upsample: str | None = None
    epochs: int = 30
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_power: float = 0.9
    crop: tuple[int, int] = (256, 256)
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    color_jitter: bool = True
    class_weights: str | None = None
    out: str | None = None
    resume: str | None = None
    seed: int = 0
    workers: int = 2
    device: str = "cpu"
    amp: bool = True
    skip_bad: bool = False
    sync_bn: bool = False
    log_every: int = 10
    max_steps_per_epoch: int | None = None
    threads: int | None = None
    progress: bool = True
    model_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = self
        checks = [
            (c.epochs >= 1, f"epochs={c.epochs} must be at least 1"),
            (c.batch_size >= 1, f"batch_size={c.batch_size} must be at least 1"),
            (c.lr > 0, f"lr={c.lr} must be positive"),
            (c.optimizer in OPTIMIZERS,
             f"optimizer={c.optimizer!r} must be one of {', '.join(OPTIMIZERS)}"),
            (DEVICE_PATTERN.fullmatch(c.device) is not None,
             f"device={c.device!r} must be cpu, cuda or cuda:N"),
            (c.workers >= 0, f"workers={c.workers} must be >= 0"),
            (c.log_every >= 1, f"log_every={c.log_every} must be at least 1"),
            (len(c.crop) == 2 and min(c.crop) >= 8, f"crop={c.crop} must be (H, W), both >= 8"),
            (len(c.scale_range) == 2 and 0 < c.scale_range[0] <= c.scale_range[1],
             f"scale_range={c.scale_range} must be (MIN, MAX) with 0 < MIN <= MAX"),
            (c.max_steps_per_epoch is None or c.max_steps_per_epoch >= 1,
             f"max_steps_per_epoch={c.max_steps_per_epoch} must be at least 1"),
            (c.threads is None or c.threads >= 1, f"threads={c.threads} must be at least 1"),
            # PyTorch's SyncBatchNorm refuses CPU modules under DDP ("only work with GPU").
            (not (c.sync_bn and c.device == "cpu"),
             "sync_bn needs a CUDA device (PyTorch's SyncBatchNorm runs on GPUs only); "
             "turn sync_bn off for CPU training"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        # Normalise sequences to tuples so the frozen config is hashable and compares equal
        # after a JSON round trip.
        object.__setattr__(self, "crop", tuple(int(v) for v in self.crop))
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))
        object.__setattr__(self, "model_options", dict(self.model_options))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples kept) for checkpoints; ``json.dumps`` turns tuples into lists."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            InputError: unknown keys (a config written by another fcnkit version).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(
                f"training config has unknown field(s) {', '.join(unknown)}; it was written by "
                "another fcnkit version: start a fresh run"
            )
        values = dict(data)
        for key in ("crop", "scale_range"):
            if key in values and values[key] is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
