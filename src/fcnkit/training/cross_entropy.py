"""Summed per-pixel cross-entropy in one autograd node, read in the logits' own layout.

``F.cross_entropy(logits.float(), masks, reduction="sum")`` on the full-resolution logits of
an FCN costs more than it computes. On channels_last logits, ``log_softmax`` over the class
dimension first copies them to NCHW (stride 1 is the class axis, not the width), its
gradient leaves in NCHW and the last transposed convolution's backward copies it back;
``nll_loss2d``'s backward fills a zero tensor of the logits' size, and under autocast
``.float()`` and its backward add two more casts. ``benchmarks/profile_train_step.py``
(FCN-8s/ResNet-18, batch 8 × 256², host C) put these at ~20 % of a bf16 step and ~11 % of
an fp32 one (docs/benchmarks.md, "The loss and the last upsampler at full resolution").

:func:`summed_cross_entropy` computes the same loss with the class axis wherever it has
stride 1 (last for channels_last, so no layout copy either way), casts inside
``log_softmax(dtype=float32)``, and its backward is the closed form
``∂L/∂z = w_t · g · (softmax(z) − onehot(t))`` (one ``exp`` of the saved log-probabilities
and one write at the target), returned in the logits' dtype and layout.
"""

from __future__ import annotations

from typing import Any

import torch

from fcnkit.constants import IGNORE_INDEX

__all__ = ["summed_cross_entropy"]


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
    if logits.dim() >= 3 and logits.stride(1) == 1 and logits.shape[1] > 1:
        # channels_last: the classes of a pixel are adjacent, the class axis goes last.
        return _SummedCrossEntropy.apply(logits.movedim(1, -1), masks, weight, -1)
    return _SummedCrossEntropy.apply(logits, masks, weight, 1)


class _SummedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, masks: torch.Tensor,  # type: ignore[override]
                weight: torch.Tensor | None, dim: int) -> torch.Tensor:
        compute = torch.promote_types(logits.dtype, torch.float32)
        log_probs = torch.log_softmax(logits, dim=dim, dtype=compute)
        valid = masks != IGNORE_INDEX
        targets = torch.where(valid, masks, 0).unsqueeze(dim)
        if weight is None:
            pixel_weight = valid.to(compute)
        else:
            pixel_weight = weight.to(compute)[targets.squeeze(dim)] * valid
        picked = log_probs.gather(dim, targets).squeeze(dim)
        # where, not a product: an ignored pixel's NaN/inf logits contribute nothing, as in
        # nll_loss, which skips ignored pixels.
        loss = -torch.where(valid, picked * pixel_weight, 0).sum()
        ctx.save_for_backward(log_probs, targets, pixel_weight)
        ctx.dim, ctx.input_dtype = dim, logits.dtype
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        log_probs, targets, pixel_weight = ctx.saved_tensors
        dim = ctx.dim
        scale = (pixel_weight * grad_loss).unsqueeze(dim)
        grad = log_probs.exp().mul_(scale)  # w · g · softmax (not in place: retain_graph)
        grad.scatter_(dim, targets, grad.gather(dim, targets) - scale)  # − w · g at t
        return grad.to(ctx.input_dtype), None, None, None
