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
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fcnkit.errors import InputError
from fcnkit.runtime.precision import LAYOUTS, PRECISIONS

#: ``TrainConfig.compile`` values (``torch.compile`` of the training step's model).
COMPILE_CHOICES = ("off", "on", "auto")

OPTIMIZERS = ("sgd", "adamw")
# "modern": the defaults below; "caffe": the FCN paper's (fcnkit.training.recipe).
RECIPES = ("modern", "caffe")
# Training devices: the CPU, or CUDA (the current GPU, or GPU N). Checked as text so the
# config stays torch-free; train() asks torch whether the device exists.
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")
#: ``resume`` value that continues from the run directory's last.pt if there is one, else
#: starts fresh (a restarted torchrun worker group runs the same command again).
AUTO_RESUME = "auto"


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
    "stop_after": Range(1, 100_000),
    "threads": Range(1, 4096),
    "aux_loss_weight": Range(0.0, 1000.0),
    "width": Range(0.0, 1.0, low_open=True),
}
#: Fields that hold integers (the rest of RANGES are real numbers).
INTEGER_FIELDS = frozenset({"epochs", "batch_size", "crop", "seed", "workers", "log_every",
                            "max_steps_per_epoch", "stop_after", "threads"})


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
        raise InputError(f"class_weights={spec!r} must be 'auto' or comma-separated finite "
                         "numbers in [0, 1e6], one per class")
    if not any(values):
        raise InputError(f"class_weights={spec!r}: every weight is 0, so no pixel would "
                         "count in the loss; give at least one class a positive weight")


def check_field(name: str, value: Any) -> None:
    """Raise :class:`InputError` unless ``value`` (or each of a pair) is in ``RANGES[name]``.

    The message names the field (``lr=inf: expected ...``), as every TrainConfig check does.
    """
    span = RANGES[name]
    integer = name in INTEGER_FIELDS
    kind = "integer" if integer else "number"
    for v in (value if isinstance(value, (tuple, list)) else (value,)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                integer and not float(v).is_integer()) or not span.contains(float(v)):
            raise InputError(f"{name}={value!r}: expected a finite {kind} in "
                             f"{span.describe()}")


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
        width: fraction of the backbone's channel counts passed to ``build_model`` (None:
            1, the standard network); e.g. 0.25 trains several times faster on a CPU with
            the same geometry.
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
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (under DDP each process uses
            ``cuda:LOCAL_RANK``).
        precision: ``"auto"`` (bf16 autocast on CUDA; on a CPU with native bf16 the
            faster of fp32 and bf16 for the model, measured and cached, in a single-process
            run, else bf16; fp32 elsewhere), ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast
            + GradScaler); weights and checkpoints stay float32
            (:mod:`fcnkit.runtime.precision`).
        channels_last: ``"auto"`` (on for CPU and CUDA), ``"on"`` or ``"off"``: model and
            batches in NHWC layout.
        compile: ``"off"`` (default), ``"on"`` or ``"auto"`` (True/False are accepted for
            on/off): ``torch.compile`` (inductor) of the model for the training step;
            validation and checkpoints use the un-compiled module (same state_dict keys).
            ``"auto"`` stays off until compiled training is measured faster
            (``benchmarks/bench_train.py --compile``;
            :func:`fcnkit.training.setup.resolve_compile`).
        skip_bad: skip unreadable/inconsistent samples with a warning instead of failing.
        sync_bn: SyncBatchNorm across processes (distributed CUDA runs only).
        log_every: write a ``metrics.jsonl`` step line every this many optimizer steps.
        max_steps_per_epoch: stop each epoch after this many steps (None: the whole split).
        stop_after: stop after this epoch, with the LR schedule still spanning ``epochs``
            (None: run to ``epochs``): the first epochs of a longer schedule, exactly as
            they are in the whole run; ``resume`` continues it (a resumed run does not
            inherit ``stop_after``).
        threads: torch intra-op threads per process (None: cores / local processes).
        progress: tqdm progress bar on rank 0.
        tensorboard: also write TensorBoard events to ``RUN_DIR/tensorboard`` (scalars and a
            few validation predictions per epoch; needs the ``tensorboard`` extra).
        model_options: further keyword options for ``build_model`` (plain values only).
        backbone_weights: pretrained weights for the backbone alone, as fine-tuning usually
            starts: a local torchvision classification file (``resnet18-f37072fd.pth``,
            ``vgg16-397923af.pth``: VGG16's fc6/fc7 are transplanted as convolutions) or a
            torchvision weights name (``IMAGENET1K_V1``, ``DEFAULT``) already in
            ``$TORCH_HOME/hub/checkpoints`` (``build_model(backbone_weights=)``; nothing
            downloads). Read when the run starts, not when it resumes.
        init_from: weights to start from (a fcnkit checkpoint or .safetensors, a torchvision
            or pytorch-fcn file): every tensor matching by name (mapped by role for foreign
            layouts) and shape is copied, the rest initialised as usual, and the counts
            reported (staged training FCN-32s → 16s → 8s, fine-tuning). Their
            preprocessing becomes the model's.
        recipe: ``"modern"`` or ``"caffe"`` (summed loss, per-parameter lr multipliers,
            whole images without augmentation; see :mod:`fcnkit.training.recipe` and
            :func:`fcnkit.training.recipe.caffe_recipe_defaults` for its hyper-parameters).
        aux_loss_weight: weight of the auxiliary head's loss for models built with
            ``aux=True`` (0.5 as in torchvision's references).
    """

    data: str
    train_split: str = "train"
    val_split: str = "val"
    model: str = "fcn8s"
    backbone: str | None = "resnet18"
    upsample: str | None = None
    width: float | None = None
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
    precision: str = "auto"
    channels_last: str = "auto"
    compile: str = "off"
    skip_bad: bool = False
    sync_bn: bool = False
    log_every: int = 10
    max_steps_per_epoch: int | None = None
    stop_after: int | None = None
    threads: int | None = None
    progress: bool = True
    tensorboard: bool = False
    model_options: Mapping[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    backbone_weights: str | None = None
    recipe: str = "modern"
    aux_loss_weight: float = 0.5

    def __post_init__(self) -> None:
        c = self
        if isinstance(c.compile, bool):  # the library may say compile=True / False
            object.__setattr__(self, "compile", "on" if c.compile else "off")
        for name in RANGES:
            value = getattr(c, name)
            if value is not None:
                check_field(name, value)
        check_class_weights(c.class_weights)
        checks = [
            (c.recipe in RECIPES, f"recipe={c.recipe!r} must be one of {', '.join(RECIPES)}"),
            (c.optimizer in OPTIMIZERS,
             f"optimizer={c.optimizer!r} must be one of {', '.join(OPTIMIZERS)}"),
            (DEVICE_PATTERN.fullmatch(c.device) is not None,
             f"device={c.device!r} must be cpu, cuda or cuda:N"),
            (c.precision in PRECISIONS,
             f"precision={c.precision!r} must be one of {', '.join(PRECISIONS)}"),
            (c.channels_last in LAYOUTS,
             f"channels_last={c.channels_last!r} must be one of {', '.join(LAYOUTS)}"),
            (c.compile in COMPILE_CHOICES,
             f"compile={c.compile!r} must be one of {', '.join(COMPILE_CHOICES)}"),
            (c.stop_after is None or c.stop_after <= c.epochs,
             f"stop_after={c.stop_after} must be at most epochs={c.epochs}"),
            (len(c.crop) == 2, f"crop={c.crop} must be (H, W)"),
            (len(c.scale_range) == 2 and c.scale_range[0] <= c.scale_range[1],
             f"scale_range={c.scale_range} must be (MIN, MAX) with 0 < MIN <= MAX"),
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
        # "amp" (fp16 autocast on CUDA) was replaced by "precision"; old runs still resume.
        data = {k: v for k, v in data.items() if k != "amp"}
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

    @property
    def last_epoch(self) -> int:
        """The epoch this invocation ends with: ``stop_after``, else ``epochs``."""
        return self.epochs if self.stop_after is None else self.stop_after
