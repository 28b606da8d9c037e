"""The training configuration: one frozen dataclass, filled by argparse, saved as JSON.

``TrainConfig`` is written to ``RUN_DIR/config.json`` and, as a plain dict, into every
checkpoint (``asdict`` keeps only str/int/float/bool/None/tuples, which
``torch.load(weights_only=True)`` reads back).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fcnkit.errors import InputError

OPTIMIZERS = ("sgd", "adamw")
#: ``resume`` value that continues from the run directory's last.pt if there is one, else
#: starts fresh (a restarted torchrun worker group runs the same command again).
AUTO_RESUME = "auto"
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Range:
    """Accepted values of a numeric field: ``low .. high`` (``*_open``: bound excluded)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        above_low = value > self.low if self.low_open else value >= self.low
        below_high = value < self.high if self.high_open else value <= self.high
        return math.isfinite(value) and above_low and below_high

    def describe(self) -> str:
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{left}{self.low:g}, {self.high:g}{right}"


#: The one table of accepted numeric training settings (the CLI's argument types use it
#: too). Bounds that are not physical say where nonsense starts: an SGD learning rate
#: above 10 or a momentum of 1 (no decay of the velocity) diverge; seeds are 32-bit
#: (numpy's legacy range); scale factors outside [0.01, 100] turn a crop into a few pixels
#: or a gigapixel image.
RANGES: dict[str, Range] = {
    "epochs": Range(1, 100_000),
    "batch_size": Range(1, 4096),
    "lr": Range(0.0, 10.0, low_open=True),
    "momentum": Range(0.0, 1.0, high_open=True),
    "weight_decay": Range(0.0, 1.0),
    "lr_power": Range(0.0, 100.0),
    "crop": Range(8, 65_536),
    "scale_range": Range(0.01, 100.0),
    "seed": Range(0, 2**32 - 1),
    "workers": Range(0, 256),
    "log_every": Range(1, 10**9),
    "max_steps_per_epoch": Range(1, 10**9),
    "threads": Range(1, 4096),
}
#: Fields that hold integers (the rest of RANGES are real numbers).
INTEGER_FIELDS = frozenset({"epochs", "batch_size", "crop", "seed", "workers", "log_every",
                            "max_steps_per_epoch", "threads"})


def check_class_weights(spec: str | None) -> None:
    """Refuse class weights that are not ``"auto"`` or finite numbers in [0, 1e6], not all 0.

    (The count is checked against the dataset's classes when training starts.) The bound
    keeps ``sum(w * loss) / sum(w)`` finite in float32 (max 3.4e38).
    """
    if spec is None or spec == "auto":
        return
    try:
        values = [float(v) for v in str(spec).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(0 <= v <= 1e6 for v in values):
        raise InputError(f"--class-weights {spec!r} must be 'auto' or comma-separated finite "
                         "numbers in [0, 1e6], one per class")
    if not any(values):
        raise InputError(f"--class-weights {spec!r}: every weight is 0, so no pixel would "
                         "count in the loss; give at least one class a positive weight")


def check_field(name: str, value: Any) -> None:
    """Raise :class:`InputError` unless ``value`` (or each of a pair) is in ``RANGES[name]``."""
    span = RANGES[name]
    flag = "--" + name.replace("_", "-")
    for v in (value if isinstance(value, (tuple, list)) else (value,)):
        integer = name in INTEGER_FIELDS
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                integer and not float(v).is_integer()):
            kind = "an integer" if integer else "a number"
            raise InputError(f"{flag} {value!r}: expected {kind} in {span.describe()}")
        if not span.contains(float(v)):
            raise InputError(f"{flag} {value!r}: expected a finite "
                             f"{'integer' if integer else 'number'} in {span.describe()}")


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
        resume: run directory or checkpoint to continue from (None: start fresh;
            ``"auto"``: the run directory's last.pt if it exists, else start fresh).
        seed: seed of model initialisation, shuffling and augmentation.
        workers: DataLoader worker processes per training process.
        device: ``"cpu"`` or ``"cuda"``.
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
        for name in RANGES:
            value = getattr(c, name)
            if value is not None:
                check_field(name, value)
        check_class_weights(c.class_weights)
        checks = [
            (c.epochs >= 1, f"--epochs {c.epochs} must be at least 1"),
            (c.batch_size >= 1, f"--batch-size {c.batch_size} must be at least 1"),
            (c.lr > 0, f"--lr {c.lr} must be positive"),
            (c.optimizer in OPTIMIZERS,
             f"--optimizer {c.optimizer!r} must be one of {', '.join(OPTIMIZERS)}"),
            (c.device in DEVICES, f"--device {c.device!r} must be one of {', '.join(DEVICES)}"),
            (c.workers >= 0, f"--workers {c.workers} must be >= 0"),
            (c.log_every >= 1, f"--log-every {c.log_every} must be at least 1"),
            (len(c.crop) == 2 and min(c.crop) >= 8, f"--crop {c.crop} must be H,W, both >= 8"),
            (len(c.scale_range) == 2 and 0 < c.scale_range[0] <= c.scale_range[1],
             f"--scale-range {c.scale_range} must be MIN,MAX with 0 < MIN <= MAX"),
            (c.max_steps_per_epoch is None or c.max_steps_per_epoch >= 1,
             f"--max-steps-per-epoch {c.max_steps_per_epoch} must be at least 1"),
            (c.threads is None or c.threads >= 1, f"--threads {c.threads} must be at least 1"),
            # PyTorch's SyncBatchNorm refuses CPU modules under DDP ("only work with GPU").
            (not (c.sync_bn and c.device == "cpu"),
             "--sync-bn needs --device cuda (PyTorch's SyncBatchNorm runs on GPUs only); "
             "drop --sync-bn for CPU training"),
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
        """Inverse of :meth:`to_dict`; unknown keys (from another version) are rejected."""
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
