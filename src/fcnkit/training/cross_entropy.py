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
on a CPU with at least :data:`SHORT_ROWS` classes: the class axis goes last, where it has
stride 1, so no layout copy is made; the cast happens inside
``log_softmax(dtype=float32)``; the backward is the closed form
``∂L/∂z = w_t · g · (softmax(z) − onehot(t))`` (one ``exp`` of the saved log-probabilities
and one write at the target), returned in the logits' dtype and layout. Every other case
(NCHW, fewer classes, CUDA) is ``F.cross_entropy`` itself, which
``benchmarks/bench_loss.py`` measured as fast or faster there, or did not measure (CUDA).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from fcnkit.constants import IGNORE_INDEX

__all__ = ["SHORT_ROWS", "summed_cross_entropy"]

#: The one-node loss from this many classes on. Below it, torch's log-softmax over the
#: last axis works one row at a time (rows shorter than a vector register cost it 8–9 ns
#: per score, against 2 ns from 16 classes on), and F.cross_entropy's copy to NCHW is the
#: cheaper way: benchmarks/bench_loss.py on host C, 0.3–0.5× with the class axis last for
#: 2–12 classes, 1.4–2.9× for 16–150 (docs/benchmarks.md, "The loss and the last upsampler
#: at full resolution").
SHORT_ROWS = 16


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
    if (logits.is_cpu and logits.dim() >= 3 and logits.stride(1) == 1
            and logits.shape[1] >= SHORT_ROWS):
        # channels_last: the classes of a pixel are adjacent, the class axis goes last.
        return _ClassLastCrossEntropy.apply(logits.movedim(1, -1), masks, weight)
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
