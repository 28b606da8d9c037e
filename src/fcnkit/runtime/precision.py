"""Numeric precision, memory layout and backend names for training and inference.

This module imports torch only inside its functions, so the command line can offer
:data:`PRECISIONS`, :data:`LAYOUTS` and :data:`BACKENDS` without loading torch.

``precision`` is one of :data:`PRECISIONS`:

* ``"fp32"``: plain float32.
* ``"bf16"`` / ``"fp16"``: ``torch.autocast`` with that dtype. Weights (and so checkpoints)
  stay float32; convolutions and matmuls run in the low-precision dtype.
* ``"auto"``: bf16 on CUDA; fp32 on CPUs without native bf16 arithmetic (AVX512-BF16 or
  AMX, detected at run time: there bf16 autocast is emulated and usually *slower* than
  fp32, docs/benchmarks.md has the measurements). On a CPU with native bf16, whether bf16
  pays depends on the model (MobileNetV3's depthwise convolutions ran at 0.90x of fp32 on
  an AMX CPU), so when the model is known ``auto`` *measures* it once
  (:func:`calibrate_precision`: a few timed forward passes in each precision, median of
  them, bf16 only if it is at least :data:`BF16_MARGIN` faster) and remembers the answer in
  a small JSON cache keyed by (model architecture, CPU model and flags, torch version):
  ``~/.cache/fcnkit/precision.json``, or the file named by ``$FCNKIT_PRECISION_CACHE``.

``channels_last`` (NHWC) lets oneDNN / cuDNN pick their fastest convolution kernels;
:func:`resolve_channels_last` decides ``"auto"`` the same way for every command.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcnkit.atomic import write_text_atomic
from fcnkit.errors import InputError
from fcnkit.jsonio import dumps_strict

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "LAYOUTS",
    "FP32",
    "Precision",
    "cpu_has_native_bf16",
    "cpu_signature",
    "calibration_key",
    "choose_by_timings",
    "calibrate_precision",
    "precision_cache_path",
    "read_precision_cache",
    "write_precision_cache",
    "resolve_precision",
    "resolve_channels_last",
    "autocast",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LAYOUTS = ("auto", "on", "off")
#: Inference backends (:mod:`fcnkit.inference.backends`). "auto" picks by the model file:
#: onnxruntime for an ``.onnx`` file, torch for a checkpoint.
BACKENDS = ("auto", "torch", "onnxruntime")


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` ("fp32", "bf16", "fp16"), the autocast ``dtype``
    (None for fp32) and ``reason``, one line saying why it was chosen."""

    name: str
    dtype: Any  # torch.dtype | None
    reason: str


#: Plain float32 (no autocast).
FP32 = Precision("fp32", None, "fp32")

#: ``auto`` picks bf16 only when its median forward time is at least this fraction below
#: fp32's: smaller differences are within the noise of a few timed passes, and fp32 is
#: the exact choice.
BF16_MARGIN = 0.05
#: Environment variable naming the calibration cache file.
PRECISION_CACHE_ENV = "FCNKIT_PRECISION_CACHE"
#: Format tag of the calibration cache file.
PRECISION_CACHE_FORMAT = "fcnkit-precision-cache/1"
#: Calibration input (batch 1, height, width): half of the 320x480 training crop, small
#: enough that a ResNet-50 pass takes tens of milliseconds on one core.
CALIBRATION_SIZE = (160, 240)
#: Timed forward passes per precision (after one untimed warm-up pass each).
CALIBRATION_RUNS = 5
# CPU flags that decide which kernels oneDNN runs; part of the cache key.
_KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                 "amx_fp16")


def cpu_has_native_bf16() -> bool:
    """True when this CPU executes bf16 natively (AVX512-BF16 or AMX tiles).

    Uses PyTorch's own CPU feature probes (``torch.cpu._is_avx512_bf16_supported``,
    ``_is_amx_tile_supported``); False when this torch build has neither probe.
    """
    # local: import cost (torch, ~3 s: the command line's parser reads PRECISIONS here)
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in probes:
        probe = getattr(torch.cpu, name, None)
        if probe is not None and bool(probe()):
            return True
    return False


def cpu_signature(cpuinfo: str | None = None) -> str:
    """This CPU's model name and the kernel-relevant flags it has, e.g.
    ``"AMD EPYC 9654 [avx2 avx512_bf16 avx512f]"`` (from ``/proc/cpuinfo``, or
    ``platform.processor()`` where there is none). ``cpuinfo``: that file's text (tests)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    name, flags = "", set[str]()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name} [{' '.join(sorted(f for f in _KERNEL_FLAGS if f in flags))}]"


def model_signature(model: Any) -> str:
    """The architecture of ``model``: its class and a digest of its state_dict's names,
    shapes and dtypes and of its modules' classes (the same for every checkpoint of one
    model config, whatever the weights' values, which do not change the speed). The classes
    count because they decide what a forward pass runs: the state dict of
    :class:`fcnkit.models.heads.GroupedBilinear` is a plain ``ConvTranspose2d``'s, but it
    runs in float32 under autocast, which changed which precision is faster."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
    for name, module in model.named_modules():
        kind = type(module)
        digest.update(f"{name}:{kind.__module__}.{kind.__qualname__};".encode())
    return f"{type(model).__name__}:{digest.hexdigest()[:16]}"


def calibration_key(model_key: str, cpu: str, torch_version: str, *,
                    channels_last: bool = False) -> str:
    """The cache key of one calibration: model architecture, layout, CPU and torch."""
    layout = "channels_last" if channels_last else "NCHW"
    return f"{model_key} | {layout} | {cpu} | torch {torch_version}"


def choose_by_timings(fp32_seconds: Sequence[float], bf16_seconds: Sequence[float], *,
                      margin: float = BF16_MARGIN) -> tuple[str, str]:
    """``("bf16" | "fp32", reason)`` from timed passes: bf16 when its median is at least
    ``margin`` below fp32's median (a ratio fp32/bf16 of ``1 / (1 - margin)`` or more)."""
    fp32, bf16 = statistics.median(fp32_seconds), statistics.median(bf16_seconds)
    speedup = fp32 / bf16 if bf16 > 0 else float("inf")
    verdict = "bf16" if bf16 <= fp32 * (1.0 - margin) else "fp32"
    measured = (f"measured bf16 {speedup:.2f}x of fp32 for this model, median of "
                f"{len(fp32_seconds)}")
    if verdict == "bf16":
        return "bf16", f"auto: bf16 autocast ({measured})"
    return "fp32", (f"auto: fp32 ({measured}; bf16 needs >= "
                    f"{1.0 / (1.0 - margin):.2f}x)")


def precision_cache_path() -> Path:
    """``$FCNKIT_PRECISION_CACHE``, else ``~/.cache/fcnkit/precision.json``."""
    named = os.environ.get(PRECISION_CACHE_ENV)
    if named:
        return Path(named).expanduser()
    return Path.home() / ".cache" / "fcnkit" / "precision.json"


def read_precision_cache(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The cache's entries ``{key: {"choice": ..., "reason": ...}}``; ``{}`` when the file
    is missing, and ``{}`` with a warning when it is unreadable or not this format (it is
    then rewritten by the next :func:`write_precision_cache`)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != PRECISION_CACHE_FORMAT:
            raise ValueError(f"not a {PRECISION_CACHE_FORMAT} file")
        entries = data.get("entries")
        if not isinstance(entries, dict) or not all(
                isinstance(e, dict) and e.get("choice") in ("fp32", "bf16")
                and isinstance(e.get("reason"), str) for e in entries.values()):
            raise ValueError("entries are not {key: {choice, reason}}")
        return entries
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        warnings.warn(f"{path}: ignoring the precision cache ({exc}); it will be measured "
                      "again and rewritten", stacklevel=2)
        return {}


def write_precision_cache(path: str | os.PathLike[str],
                          entries: dict[str, dict[str, Any]]) -> None:
    """Write the cache atomically; a warning (not an error) when it cannot be written."""
    try:
        write_text_atomic(path, dumps_strict({"format": PRECISION_CACHE_FORMAT,
                                              "entries": entries}, indent=1) + "\n")
    except OSError as exc:
        warnings.warn(f"{path}: cannot write the precision cache ({exc})", stacklevel=2)


def time_forward(model: Any, x: Any, dtype: Any, runs: int,
                 timer: Callable[[], float], *, warmup: bool = True) -> list[float]:
    """Seconds of ``runs`` forward passes of ``model`` on ``x`` under ``dtype`` autocast
    (None: fp32), after one untimed warm-up pass if ``warmup``."""
    # local: import cost (torch, ~3 s: the command line's parser reads PRECISIONS here)
    import torch

    context = (contextlib.nullcontext() if dtype is None
               else torch.autocast("cpu", dtype=dtype))
    times = []
    with torch.no_grad(), context:
        if warmup:
            model(x)
        for _ in range(runs):
            start = timer()
            model(x)
            times.append(timer() - start)
    return times


def calibrate_precision(
    model: Any,
    *,
    channels_last: bool = False,
    model_key: str | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    runs: int = CALIBRATION_RUNS,
    size: tuple[int, int] = CALIBRATION_SIZE,
    timer: Callable[[], float] = time.perf_counter,
    measure: Callable[..., list[float]] = time_forward,
) -> Precision:
    """fp32 or bf16 autocast for ``model`` on this CPU, whichever is faster by the rule of
    :func:`choose_by_timings`, measured once per cache key and then read from the cache.

    The passes run in eval mode under ``no_grad`` on a fixed input of ``size`` (the
    model's mode is restored; its weights and BatchNorm statistics are not changed, and
    the global random state is not used). The two precisions alternate pass by pass.
    ``measure`` (``time_forward``'s signature) and ``timer`` can be replaced, e.g. by tests.
    """
    # local: import cost (torch, ~3 s: the command line's parser reads PRECISIONS here)
    import torch

    path = Path(cache_path) if cache_path is not None else precision_cache_path()
    key = calibration_key(model_key or model_signature(model), cpu_signature(),
                          torch.__version__, channels_last=channels_last)
    entries = read_precision_cache(path)
    if key in entries:
        entry = entries[key]
        name = entry["choice"]
        return Precision(name, torch.bfloat16 if name == "bf16" else None,
                         f"{entry['reason']}, cached in {path}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    fp32: list[float] = []
    bf16: list[float] = []
    try:
        # Interleaved pass by pass, so a change of load on a shared machine hits both alike.
        for run in range(runs):
            fp32 += measure(model, x, None, 1, timer, warmup=run == 0)
            bf16 += measure(model, x, torch.bfloat16, 1, timer, warmup=run == 0)
    finally:
        model.train(was_training)
    name, reason = choose_by_timings(fp32, bf16)
    entries[key] = {"choice": name, "reason": reason,
                    "fp32_ms": [round(t * 1e3, 3) for t in fp32],
                    "bf16_ms": [round(t * 1e3, 3) for t in bf16]}
    write_precision_cache(path, entries)
    return Precision(name, torch.bfloat16 if name == "bf16" else None, reason)


def resolve_precision(precision: str, device: Any = "cpu", *, model: Any = None,
                      channels_last: bool = False) -> Precision:
    """Turn a ``--precision`` value into a :class:`Precision` for ``device``.

    ``auto`` on a CPU with native bf16 calibrates ``model`` (:func:`calibrate_precision`,
    in ``channels_last`` if it will run so); without a model it keeps the CPU rule (bf16).

    Raises:
        InputError: an unknown name, or fp16 on a CPU (PyTorch's CPU fp16 autocast exists
            but is far slower than fp32 without AMX-FP16; refuse rather than crawl).
    """
    # local: import cost (torch, ~3 s: the command line's parser reads PRECISIONS here)
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r} is unknown; choose one of "
                         f"{', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return Precision("bf16", torch.bfloat16, "auto: bf16 autocast on CUDA")
        if device.type == "cpu" and cpu_has_native_bf16():
            if model is not None:
                return calibrate_precision(model, channels_last=channels_last)
            return Precision("bf16", torch.bfloat16,
                             "auto: bf16 autocast (this CPU has AVX512-BF16/AMX)")
        return Precision("fp32", None,
                         f"auto: fp32 (no native bf16 on this {device.type.upper()})")
    if precision == "fp16" and device.type == "cpu" and not getattr(
        torch.cpu, "_is_amx_fp16_supported", lambda: False
    )():
        raise InputError("--precision fp16 needs a GPU (or a CPU with AMX-FP16); "
                         "pass --precision bf16 or fp32 on this CPU")
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    return Precision(precision, dtypes[precision], f"{precision} (asked for)")


def resolve_channels_last(channels_last: bool | str, device: Any = "cpu") -> bool:
    """Whether to run in channels_last: a bool as given, ``"on"``/``"off"``, or ``"auto"``.

    ``"auto"`` is on for CPU and CUDA, where oneDNN / cuDNN have NHWC convolution kernels
    (docs/benchmarks.md has the measurements), off elsewhere (MPS).
    """
    if isinstance(channels_last, bool):
        return channels_last
    if channels_last not in LAYOUTS:
        raise InputError(f"channels_last must be one of {', '.join(LAYOUTS)}, got "
                         f"{channels_last!r}")
    if channels_last != "auto":
        return channels_last == "on"
    # local: import cost (torch, ~3 s: the command line's parser reads PRECISIONS here)
    import torch

    return torch.device(device).type in ("cpu", "cuda")


@contextlib.contextmanager
def autocast(precision: Precision, device: Any = "cpu") -> Iterator[None]:
    """``torch.autocast`` for a resolved precision; a no-op for fp32."""
    # local: import cost (torch, ~3 s: the command line's parser reads PRECISIONS here)
    import torch

    if precision.dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=precision.dtype):
        yield
