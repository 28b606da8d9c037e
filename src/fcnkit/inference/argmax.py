"""Class labels from class scores: the argmax over the channel dimension."""

from __future__ import annotations

import torch


def channel_argmax(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(dim=1)`` for (N, C, H, W) scores, by a running maximum over classes.

    PyTorch's CPU argmax over the channel dimension of an NCHW tensor walks memory with a
    stride of H·W and costs more than an FCN's whole head (``docs/benchmarks.md``); a
    running maximum reads each class map contiguously. A class replaces the current best
    only when strictly greater, so ties go to the first maximal class, as ``argmax`` does;
    NaN scores (never produced by a finite model) are the only inputs where they differ.

    Returns:
        (N, H, W) int64 class indices.
    """
    if scores.dim() != 4:
        raise ValueError(f"scores must be (N, C, H, W), got shape {tuple(scores.shape)}")
    scores = scores.detach()  # labels have no gradient (and out= refuses autograd inputs)
    if scores.is_contiguous(memory_format=torch.channels_last) and scores.shape[1] > 1:
        return scores.argmax(dim=1)  # channels are contiguous: argmax is already fast
    best = scores[:, 0].clone()
    labels = torch.zeros(best.shape, dtype=torch.int64, device=scores.device)
    for c in range(1, scores.shape[1]):
        candidate = scores[:, c]
        better = candidate > best
        labels.masked_fill_(better, c)
        torch.maximum(best, candidate, out=best)
    return labels
