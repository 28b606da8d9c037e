"""Which device a command runs on: the user's string, checked to be usable here."""

from __future__ import annotations

import torch

from fcnkit.errors import InputError


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, checked to be usable here.

    Raises:
        InputError: the string is not a device, or CUDA/MPS was asked for but is absent.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device {device!r} is not a device; pass cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device} asked for CUDA but none is available; use cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {device} asked for MPS but it is not available; use cpu")
    return dev
