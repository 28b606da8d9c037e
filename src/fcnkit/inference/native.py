"""The labels stage of :mod:`fcnkit.inference.lowres` as one compiled C function.

``lowres.labels_from_scores`` on 2×2 windows runs about 60 small torch operations. Right
after a backbone each of them pays a cold start, and together they were most of
ResNet-18's head (1.6–1.9 ms of 3 ms on a 60 ms body, docs/benchmarks.md). ``_labels.c``
runs the same tests with the same margins in one loop over the cells, so its labels are
still ``model(x).argmax(1)``'s bit for bit. The cells it cannot decide (ties within float32
rounding) are labelled from the model's own rounding, emulated (:func:`emulate_cells`,
once :func:`emulation_matches` has found which of the :data:`VARIANTS` the upsampler
uses), or else by the same exact path.

The C file is plain C99 with no torch headers. It is built on first use by the system C
compiler (``$CC``, else ``cc``) into ``~/.cache/fcnkit/native/`` (or
``$FCNKIT_NATIVE_CACHE``), keyed by the source's hash, the compiler and the machine, and
loaded with ctypes. Without a compiler, or with ``FCNKIT_NATIVE=0``, :func:`load` returns
None and the torch implementation runs: the labels are the same either way
(``tests/inference/test_inference_native.py``). :func:`status` says which and why.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "DECLINED",
    "NATIVE_CACHE_ENV",
    "NATIVE_ENV",
    "NONFINITE",
    "OK",
    "UNDECIDED_ROOM",
    "VARIANTS",
    "Emulation",
    "NativeResult",
    "Plan",
    "disabled",
    "emulate_cells",
    "emulation_matches",
    "labels_2x2",
    "load",
    "plan",
    "Snapshot",
    "same_bytes",
    "status",
]

#: ``FCNKIT_NATIVE=0`` turns the compiled labels stage off (the torch one runs).
NATIVE_ENV = "FCNKIT_NATIVE"
#: Directory for the built library, instead of ``~/.cache/fcnkit/native``.
NATIVE_CACHE_ENV = "FCNKIT_NATIVE_CACHE"
#: The C side's ``fk_abi()``: a stale library with another signature is rebuilt.
_ABI = 10
#: -ffp-contract=off: ``a + w * x`` rounds twice, as written (the emulated rounding of
#: ``_labels.c`` depends on it; GCC's ISO mode does so already, clang's default does not).
_FLAGS = ("-O3", "-std=c99", "-shared", "-fPIC", "-fno-fast-math", "-ffp-contract=off")

_status: list[str] = ["not loaded yet"]

_I64 = ctypes.c_int64
_F64 = ctypes.c_double
_P = ctypes.c_void_p


def status() -> str:
    """Why the compiled labels stage is or is not in use (after :func:`load`)."""
    return _status[0]


def _cache_dir() -> Path:
    named = os.environ.get(NATIVE_CACHE_ENV)
    if named:
        return Path(named).expanduser()
    return Path.home() / ".cache" / "fcnkit" / "native"


def _build(source: bytes, compiler: str, target: Path) -> str | None:
    """Compile ``source`` into ``target`` (written under a temporary name, then renamed, so
    concurrent processes — torchrun ranks — never load a half-written library); an error
    message or None."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        c_file = Path(work) / "labels.c"
        c_file.write_bytes(source)
        built = Path(work) / target.name
        try:
            done = subprocess.run([compiler, *_FLAGS, "-o", str(built), str(c_file), "-lm"],
                                  capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{compiler} failed: {error}"
        if done.returncode != 0:
            return f"{compiler} failed: {done.stderr.strip().splitlines()[-1:]}"
        os.replace(built, target)
    return None


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    if os.environ.get(NATIVE_ENV, "1") == "0":
        _status[0] = f"off ({NATIVE_ENV}=0): torch operations"
        return None
    source = resources.files("fcnkit.inference").joinpath("_labels.c").read_bytes()
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        _status[0] = "no C compiler (cc, or $CC): torch operations"
        return None
    key = hashlib.sha256(b"\0".join([source, compiler.encode(), platform.machine().encode(),
                                     platform.python_version().encode(),
                                     " ".join(_FLAGS).encode()])).hexdigest()[:16]
    target = _cache_dir() / f"fcnkit_labels_{key}.so"
    if not target.exists():
        try:
            error = _build(source, compiler, target)
        except OSError as failure:  # unwritable cache directory
            error = f"cannot write {target.parent}: {failure}"
        if error is not None:
            _status[0] = f"build failed ({error}): torch operations"
            return None
    try:
        library = ctypes.CDLL(str(target))
    except OSError as error:
        _status[0] = f"cannot load {target} ({error}): torch operations"
        return None
    if library.fk_abi() != _ABI:
        _status[0] = f"{target} has ABI {library.fk_abi()}, not {_ABI}: torch operations"
        return None
    library.fk_labels_2x2.restype = ctypes.c_int
    # plan, scores, n, C, max_work, labels, info, room, emulation
    library.fk_labels_2x2.argtypes = [_P, _P, _I64, _I64, _F64, _P, _P, _I64, _P]
    library.fk_same.restype = ctypes.c_int
    library.fk_same.argtypes = [_P, _P, _I64]
    library.fk_emulation_matches.restype = ctypes.c_int
    # scores, n, h, w, C, out, out_strides, H, W, emulation
    library.fk_emulation_matches.argtypes = [_P, _I64, _I64, _I64, _I64, _P, _P, _I64, _I64,
                                             _P]
    library.fk_emulate_cells.restype = ctypes.c_int
    # plan, scores, C, emulation, cells, count, labels
    library.fk_emulate_cells.argtypes = [_P, _P, _I64, _P, _P, _I64, _P]
    _status[0] = f"compiled ({target})"
    return library


def load() -> ctypes.CDLL | None:
    """The compiled library (built on first use), or None: see :func:`status`; None
    inside :func:`disabled`."""
    if _disabled:
        return None
    return _library()


_disabled: list[bool] = []


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within this block the labels stage runs as torch operations (benchmarks compare
    the two side by side; the labels are the same)."""
    _disabled.append(True)
    try:
        yield
    finally:
        _disabled.pop()


class Snapshot:
    """A copy of a contiguous CPU tensor's bytes, for :func:`same_bytes`."""

    __slots__ = ("address", "array", "dtype", "nbytes", "shape")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.array = tensor.detach().numpy().copy()
        self.shape, self.dtype = tensor.shape, tensor.dtype
        self.nbytes = self.array.nbytes
        self.address = self.array.ctypes.data  # (numpy's .ctypes is slow: taken once)


def same_bytes(tensor: torch.Tensor, snapshot: Snapshot) -> bool:
    """True when a CPU tensor holds exactly the bytes of ``snapshot`` (same shape and
    dtype): one ``memcmp`` with the compiled library, a ``bytes`` comparison without.
    (Few torch calls: this runs for every image, right after the backbone.)"""
    if (not tensor.is_cpu or tensor.dtype != snapshot.dtype or tensor.shape != snapshot.shape
            or not tensor.is_contiguous()):
        return False
    library = load()
    if library is not None:
        return bool(library.fk_same(tensor.data_ptr(), snapshot.address, snapshot.nbytes))
    return tensor.detach().numpy().tobytes() == snapshot.array.tobytes()


#: ``fk_labels_2x2``'s status codes (``_labels.c``).
OK, NONFINITE, DECLINED, NOMEM = 0, 1, 2, 3


class _PlanStruct(ctypes.Structure):
    """``fk_plan`` of ``_labels.c``."""

    _fields_ = [(name, _I64) for name in ("h", "w", "bh", "bw", "H", "W")] + [
        (name, _P) for name in ("corner", "row_bands", "col_bands", "row_w", "col_w")] + [
        (name, _F64) for name in ("margin", "blend_rel", "tiny")]


class Plan:
    """What the C function needs that depends only on the geometry and the upsampler,
    built once per geometry (:func:`plan`): its arrays, and the ``fk_plan`` struct that
    points into them (whose address is passed: a call converts eight arguments, not 21)."""

    __slots__ = ("address", "arrays", "cells", "coarse", "size", "struct")

    def __init__(self, arrays: dict[str, np.ndarray], coarse: tuple[int, int],
                 size: tuple[int, int], constants: dict[str, float]) -> None:
        self.arrays = arrays  # kept alive: the struct points into them
        self.coarse, self.size = coarse, size
        self.cells = len(arrays["row_bands"]) * len(arrays["col_bands"])
        self.struct = _PlanStruct(
            h=coarse[0], w=coarse[1], bh=len(arrays["row_bands"]), bw=len(arrays["col_bands"]),
            H=size[0], W=size[1], **{k: v.ctypes.data for k, v in arrays.items()},
            **constants)
        self.address = ctypes.addressof(self.struct)


def plan(corner: torch.Tensor | np.ndarray, bands: tuple[np.ndarray, np.ndarray],
         weights: tuple[np.ndarray, np.ndarray], coarse: tuple[int, int], *,
         margin: float, relative: float, tiny: float) -> Plan:
    """A :class:`Plan` from the cells' corner pixels in one ``coarse`` = ``(h, w)`` map, the
    row and column bands (``fcnkit.arith.tiling.output_bands``), the weight tables
    (``band_weights``; windows of at most 2 taps), and the pruning's margin, the blend's
    relative tolerance and its floor (:mod:`fcnkit.inference.lowres`)."""
    corner = corner.numpy() if isinstance(corner, torch.Tensor) else corner
    rows, cols = (np.ascontiguousarray(b, dtype=np.int64) for b in bands)
    arrays = {"corner": np.ascontiguousarray(corner, dtype=np.int64), "row_bands": rows,
              "col_bands": cols, "row_w": _two_taps(weights[0]),
              "col_w": _two_taps(weights[1])}
    size = (len(arrays["row_w"]), len(arrays["col_w"]))
    return Plan(arrays, coarse, size,
                {"margin": margin, "blend_rel": relative, "tiny": tiny})


#: How many undecided cells :func:`labels_2x2` names; beyond, it only counts them (then the
#: exact path takes the whole map: a map with that many near-ties is noise).
UNDECIDED_ROOM = 64


class NativeResult(NamedTuple):
    """What :func:`labels_2x2` returns: ``status`` (:data:`OK`, :data:`NONFINITE`: a score
    is NaN or infinite, nothing written; :data:`DECLINED`: the per-pixel work exceeds
    ``max_work``, the labels are not meaningful); the labels, ``(N, H, W)`` int64; the
    flat cell indices the exact path must label (None when there are more than
    :data:`UNDECIDED_ROOM`: then every row); ``stats`` (cells, doubtful, pairs,
    undecided, emulated: the cells labelled from the emulated rounding)."""

    status: int
    labels: torch.Tensor
    undecided: list[int] | None
    stats: list[int]


def _two_taps(table: np.ndarray) -> np.ndarray:
    """A ``(size, T)`` weight table as ``(size, 2)`` float64 (T ≤ 2: 2×2 windows)."""
    if table.shape[1] > 2:
        raise ValueError(f"labels_2x2 needs windows of at most 2 taps, got {table.shape[1]}")
    two = np.zeros((len(table), 2), dtype=np.float64)
    two[:, : table.shape[1]] = table
    return two


def labels_2x2(library: ctypes.CDLL, scores: torch.Tensor, plan: Plan, *,
               max_work: float, emulation: Emulation | None = None) -> NativeResult:
    """Run ``fk_labels_2x2`` (see ``_labels.c``) on ``(N, C, h, w)`` float32 CPU scores,
    channels_last-contiguous, with the ``plan`` of their geometry; the cells the blend
    cannot decide are labelled from ``emulation`` (the model's rounding, when known),
    else returned as undecided.

    The counts and the undecided cells come back in a ctypes array, not a tensor: each
    Python operation right after a backbone costs several times its warm time, and
    torch's slicing, ``tolist`` and ``nonzero`` took 10–55 µs each there.
    """
    n, classes, h, w = scores.shape
    if (scores.dtype is not torch.float32 or not scores.is_cpu
            or not scores.is_contiguous(memory_format=torch.channels_last)
            or (h, w) != plan.coarse):
        raise ValueError(f"labels_2x2 needs channels_last float32 CPU scores of "
                         f"{plan.coarse}, got {scores.dtype} {tuple(scores.shape)}")
    labels = torch.empty((n, *plan.size), dtype=torch.int64)
    room = UNDECIDED_ROOM
    info = (_I64 * (5 + room))()  # (ctypes caches the array type)
    code = library.fk_labels_2x2(plan.address, scores.data_ptr(), n, classes, max_work,
                                 labels.data_ptr(), info, room,
                                 None if emulation is None else emulation.address)
    if code == NOMEM:
        raise MemoryError("fk_labels_2x2: out of memory for its per-cell tables")
    if code == NONFINITE:
        return NativeResult(code, labels[:0], None, [0, 0, 0, 0, 0])
    stats = info[:5]
    undecided = info[5 : 5 + stats[3]] if stats[3] <= room else None
    return NativeResult(code, labels, undecided, stats)


#: How many rounding variants ``_labels.c`` can emulate: the 24 orders of a 2×2 window's
#: four products (its ``ORDERS``), each with the products rounded or fused.
VARIANTS = 48


class _EmulationStruct(ctypes.Structure):
    """``fk_emulation`` of ``_labels.c``."""

    _fields_ = [("geometry", _I64 * 8), ("kernel", _P), ("variant", _I64)]


class Emulation:
    """A transposed convolution's rounding, as ``_labels.c`` emulates it: ``geometry``
    ``(K_h, K_w, stride_h, stride_w, pad_h, pad_w, top, left)`` (top, left: the crop the
    labels cover), ``kernel`` the per-class kernel ``(K_h, K_w)`` float32, ``variant`` the
    order and fusing of its sums (see ``_labels.c``); ``address``, that of its
    ``fk_emulation`` struct."""

    __slots__ = ("address", "geometry", "kernel", "struct", "variant")

    def __init__(self, geometry: tuple[int, ...] | np.ndarray, kernel: np.ndarray,
                 variant: int) -> None:
        self.geometry = tuple(int(v) for v in geometry)
        self.kernel = np.ascontiguousarray(kernel, dtype=np.float32)  # kept alive
        self.variant = int(variant)
        self.struct = _EmulationStruct((_I64 * 8)(*self.geometry), self.kernel.ctypes.data,
                                       self.variant)
        self.address = ctypes.addressof(self.struct)

    def __repr__(self) -> str:
        return f"Emulation(geometry={self.geometry}, variant={self.variant})"


def emulation_matches(library: ctypes.CDLL, scores: torch.Tensor, out: torch.Tensor,
                      size: tuple[int, int], emulation: Emulation) -> int:
    """``fk_emulation_matches``: 1 when ``emulation`` reproduces every float32 score of
    ``out`` (the upsampler's output for ``scores``, channels_last float32) in the crop of
    ``size`` at the geometry's offset, 0 at the first one it does not, -1 when a window
    has more than 2 taps on an axis."""
    n, classes, h, w = scores.shape
    strides = (_I64 * 4)(*out.stride())
    return int(library.fk_emulation_matches(
        scores.data_ptr(), n, h, w, classes, out.data_ptr(), strides, size[0], size[1],
        emulation.address))


def emulate_cells(library: ctypes.CDLL, plan: Plan, scores: torch.Tensor,
                  emulation: Emulation, cells: list[int], labels: torch.Tensor) -> bool:
    """``fk_emulate_cells``: write the labels of ``cells`` (as :func:`labels_2x2` names
    them) from the emulated rounding of the model's upsampler; False when a window holds
    scores outside the range where the emulation is exact (its cell is left unwritten)."""
    flat = (_I64 * len(cells))(*cells)
    return library.fk_emulate_cells(plan.address, scores.data_ptr(), scores.shape[1],
                                    emulation.address, flat, len(cells),
                                    labels.data_ptr()) == 0
