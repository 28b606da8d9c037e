"""Summed per-pixel cross-entropy in one autograd node, read in the logits' own layout.

``F.cross_entropy(logits.float(), masks, reduction="sum")`` on the full-resolution logits of
an FCN costs more than it computes. On channels_last logits, ``log_softmax`` over the class
dimension first copies them to NCHW (stride 1 is the class axis, not the width), its
gradient leaves in NCHW and the last transposed convolution's backward copies it back;
``nll_loss2d``'s backward fills a zero tensor of the logits' size, and under autocast
``.float()`` and its backward add two more casts. ``benchmarks/profile_train_step.py``
(FCN-8s/ResNet-18, batch 8 × 256², host C) put these at ~20 % of a bf16 step and ~11 % of
an fp32 one (docs/benchmarks.md, "The loss and the last upsampler at full resolution").

:func:`summed_cross_entropy` computes the same loss in one node for channels_last logits
on a CPU: the class axis goes last, where it has stride 1, so no layout copy is made, and
the backward is the closed form ``∂L/∂z = w_t · g · (softmax(z) − onehot(t))``, returned
in the logits' dtype and layout. Where a C compiler is present, that node is one compiled
function per direction (``_cross_entropy.c``, built on first use by
:mod:`fcnkit.runtime.native_build` with ``-march=native``, run on
``torch.get_num_threads()`` threads): the forward reads the logits once and keeps one float
per pixel (the log-sum-exp), the backward reads them once more and writes the gradient,
where torch operations make five to seven passes over full-resolution float32 tensors. It
takes float32 and bf16 logits with at least :data:`COMPILED_ROWS` classes. Without it
(no compiler, ``FCNKIT_NATIVE=0``, float16 or float64 logits) the node is torch
operations: the cast inside ``log_softmax(dtype=float32)``, one ``exp`` of the saved
log-probabilities and one write at the target, from :data:`SHORT_ROWS` classes on. Every
other case (NCHW, fewer classes, CUDA) is ``F.cross_entropy`` itself, which
``benchmarks/bench_loss.py`` measured as fast or faster there, or did not measure (CUDA).
:func:`native_status` says whether the compiled loss is in use.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from fcnkit.constants import IGNORE_INDEX
from fcnkit.runtime import native_build

__all__ = ["COMPILED_ROWS", "SHORT_ROWS", "describe", "native_status", "summed_cross_entropy",
           "torch_operations"]

#: The one-node loss from this many classes on. Below it, torch's log-softmax over the
#: last axis works one row at a time (rows shorter than a vector register cost it 8–9 ns
#: per score, against 2 ns from 16 classes on), and F.cross_entropy's copy to NCHW is the
#: cheaper way: benchmarks/bench_loss.py on host C, 0.3–0.5× with the class axis last for
#: 2–12 classes, 1.4–2.9× for 16–150 (docs/benchmarks.md, "The loss and the last upsampler
#: at full resolution").
SHORT_ROWS = 16
#: The compiled one-node loss from this many classes on (it vectorises over a block of
#: pixels, not along a row): benchmarks/bench_loss.py on host C, with the class axis last
#: 0.62–0.84× of F.cross_entropy at 4 classes, 1.08–1.17× at 8, 1.3–1.6× at 12, 3.2–8.6×
#: from 16 on (docs/benchmarks.md, "The loss compiled").
COMPILED_ROWS = 8


def summed_cross_entropy(
    logits: torch.Tensor, masks: torch.Tensor, weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``Σ_p w[t_p] · −log softmax(z_p)[t_p]`` over the pixels ``p`` whose target ``t_p``
    is not ``IGNORE_INDEX``: ``F.cross_entropy(logits.float(), masks, weight=weight,
    ignore_index=IGNORE_INDEX, reduction="sum")``, computed in float32 (float64 for
    float64 logits).

    Args:
        logits: ``(N, C, *spatial)`` scores, any floating dtype and memory layout.
        masks: ``(N, *spatial)`` integer targets in ``[0, C)`` or ``IGNORE_INDEX``.
        weight: optional ``(C,)`` class weights.

    Raises:
        RuntimeError: a target outside ``[0, C)`` that is not ``IGNORE_INDEX`` (torch's
            index check, as in ``F.cross_entropy``).
    """
    if logits.is_cpu and logits.dim() >= 3 and logits.stride(1) == 1:
        # channels_last: the classes of a pixel are adjacent, the class axis goes last.
        class_last = logits.movedim(1, -1)
        if logits.shape[1] >= COMPILED_ROWS and _native_applies(class_last, masks, weight):
            return _NativeCrossEntropy.apply(class_last, masks, weight)
        if logits.shape[1] >= SHORT_ROWS:
            return _ClassLastCrossEntropy.apply(class_last, masks, weight)
    compute = torch.promote_types(logits.dtype, torch.float32)
    return F.cross_entropy(logits.to(compute), masks,
                           weight=None if weight is None else weight.to(compute),
                           ignore_index=IGNORE_INDEX, reduction="sum")


class _ClassLastCrossEntropy(torch.autograd.Function):
    """The summed loss of ``(..., C)`` logits (classes on the last axis) and ``(...)``
    targets."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, masks: torch.Tensor,  # type: ignore[override]
                weight: torch.Tensor | None) -> torch.Tensor:
        compute = torch.promote_types(logits.dtype, torch.float32)
        log_probs = torch.log_softmax(logits, dim=-1, dtype=compute)
        valid = masks != IGNORE_INDEX
        targets = torch.where(valid, masks, 0).unsqueeze(-1)
        if weight is None:
            pixel_weight = valid.to(compute)
        else:
            pixel_weight = weight.to(compute)[targets.squeeze(-1)] * valid
        picked = log_probs.gather(-1, targets).squeeze(-1)
        # where, not a product: an ignored pixel's NaN/inf logits contribute nothing, as in
        # nll_loss, which skips ignored pixels.
        loss = -torch.where(valid, picked * pixel_weight, 0).sum()
        ctx.save_for_backward(log_probs, targets, pixel_weight)
        ctx.input_dtype = logits.dtype
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None
        log_probs, targets, pixel_weight = ctx.saved_tensors
        scale = (pixel_weight * grad_loss).unsqueeze(-1)
        grad = log_probs.exp().mul_(scale)  # w · g · softmax (not in place: retain_graph)
        grad.scatter_(-1, targets, grad.gather(-1, targets) - scale)  # − w · g at t
        return grad.to(ctx.input_dtype), None, None


#: ``fk_ce_*``'s status codes (``_cross_entropy.c``).
_OK, _BAD_TARGET, _NOMEM = 0, 1, 3
_ABI = 1
_NATIVE_DTYPES = {torch.float32: 0, torch.bfloat16: 1}
_status: list[str] = ["not loaded yet"]
_P, _I64 = ctypes.c_void_p, ctypes.c_int64


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    library, why = native_build.build_and_load(
        "fcnkit.training", "_cross_entropy.c", "fcnkit_cross_entropy",
        ("-O3", native_build.MARCH_NATIVE, "-std=c99", "-shared", "-fPIC", "-fno-fast-math",
         "-ffp-contract=off"))
    if library is None or library.fk_ce_abi() != _ABI:
        _status[0] = f"{why}: torch operations"
        return None
    # logits, bf16, begin, end, C, targets, ignore, weight, lse, loss, bad
    library.fk_ce_forward.argtypes = [_P, ctypes.c_int, _I64, _I64, _I64, _P, _I64, _P, _P,
                                      _P, _P]
    # logits, bf16, begin, end, C, targets, ignore, weight, lse, g, grad
    library.fk_ce_backward.argtypes = [_P, ctypes.c_int, _I64, _I64, _I64, _P, _I64, _P, _P,
                                       ctypes.c_float, _P]
    _status[0] = why
    return library


def describe(classes: int, device: torch.device, channels_last: bool) -> str:
    """What computes the loss of a run, for its banner: ``"loss compiled"``, the torch
    operations and why, or ``""`` where :func:`summed_cross_entropy` is
    ``F.cross_entropy`` itself whatever the compiler (too few classes, NCHW, CUDA)."""
    if device.type != "cpu" or not channels_last or classes < COMPILED_ROWS:
        return ""
    if _library() is not None:
        return "loss compiled"
    return f"loss as torch operations ({_status[0].removesuffix(': torch operations')})"


def native_status() -> str:
    """Whether the one-node loss runs compiled (and from which file) or as torch
    operations, and why."""
    _library()
    return _status[0]


_torch_only: list[bool] = []


@contextlib.contextmanager
def torch_operations() -> Iterator[None]:
    """Within this block the one-node loss runs as torch operations, compiler or not
    (benchmarks compare the two side by side)."""
    _torch_only.append(True)
    try:
        yield
    finally:
        _torch_only.pop()


def _native_applies(logits: torch.Tensor, masks: torch.Tensor,
                    weight: torch.Tensor | None) -> bool:
    """``(..., C)`` class-last logits the compiled loss takes: float32 or bf16, contiguous,
    targets of the same shape, a weight per class; anything else (torch then raises its
    own error for a bad shape) takes the torch operations."""
    return (logits.dtype in _NATIVE_DTYPES and logits.is_contiguous() and logits.numel() > 0
            and masks.shape == logits.shape[:-1] and not masks.is_floating_point()
            and (weight is None or weight.shape == (logits.shape[-1],))
            and not _torch_only and _library() is not None)


@functools.lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="fcnkit-loss")


def _run_split(call: Callable[[int, int, int], int], pixels: int) -> list[int]:
    """``call(begin, end, i)`` on ``torch.get_num_threads()`` equal ranges of the pixels at
    once (ctypes releases the GIL during each C call), ranges of at least 4096 pixels; the
    status codes."""
    threads = max(1, min(torch.get_num_threads(), pixels // 4096))
    if threads == 1:
        return [call(0, pixels, 0)]
    cuts = [pixels * i // threads for i in range(threads + 1)]
    return list(_pool(threads).map(call, cuts[:-1], cuts[1:], range(threads)))


class _NativeCrossEntropy(torch.autograd.Function):
    """:class:`_ClassLastCrossEntropy` as two compiled functions (``_cross_entropy.c``):
    the same loss and gradient, one pass over the logits in each direction."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, masks: torch.Tensor,  # type: ignore[override]
                weight: torch.Tensor | None) -> torch.Tensor:
        library = _library()
        assert library is not None  # (_native_applies checked it)
        classes = logits.shape[-1]
        pixels = logits.numel() // classes
        targets = masks.to(torch.int64).contiguous()
        weights = None if weight is None else weight.detach().to(torch.float32).contiguous()
        lse = torch.empty(pixels, dtype=torch.float32)
        sums = [ctypes.c_double() for _ in range(max(1, torch.get_num_threads()))]
        bad = [_I64() for _ in sums]
        args = (logits.data_ptr(), _NATIVE_DTYPES[logits.dtype])
        tail = (classes, targets.data_ptr(), IGNORE_INDEX,
                None if weights is None else weights.data_ptr(), lse.data_ptr())
        codes = _run_split(lambda begin, end, i: library.fk_ce_forward(
            *args, begin, end, *tail, ctypes.byref(sums[i]), ctypes.byref(bad[i])), pixels)
        _raise_for(codes, bad, classes)
        ctx.save_for_backward(logits, targets, weights, lse)
        return torch.tensor(sum(s.value for s in sums), dtype=torch.float32)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None
        library = _library()
        assert library is not None
        logits, targets, weights, lse = ctx.saved_tensors
        classes = logits.shape[-1]
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        args = (logits.data_ptr(), _NATIVE_DTYPES[logits.dtype])
        tail = (classes, targets.data_ptr(), IGNORE_INDEX,
                None if weights is None else weights.data_ptr(), lse.data_ptr(),
                float(grad_loss), grad.data_ptr())
        codes = _run_split(lambda begin, end, i: library.fk_ce_backward(
            *args, begin, end, *tail), lse.numel())
        _raise_for(codes, [], classes)
        return grad, None, None


def _raise_for(codes: list[int], bad: list[Any], classes: int) -> None:
    """torch's errors for the C functions' status codes."""
    for i, code in enumerate(codes):
        if code == _BAD_TARGET:
            raise IndexError(f"Target {bad[i].value} is out of bounds: the logits have "
                             f"{classes} classes (ignore_index {IGNORE_INDEX})")
        if code == _NOMEM:
            raise MemoryError("fk_ce: out of memory for a block of scores")
