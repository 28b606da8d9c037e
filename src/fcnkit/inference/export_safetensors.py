"""Weights out as ``.safetensors``: tensors plus the metadata needed to rebuild the model.

safetensors (Hugging Face) is the weight format of the model-sharing ecosystem: a JSON
header and raw tensor bytes, so loading it never executes code. fcnkit writes the model's
state dict and, as string metadata (JSON values)::

    format         "fcnkit-weights/1"
    model_config   {"name": "fcn8s", "num_classes": 21, "faithful": true, ...}
    classes        ["background", ...]
    palette        [[0, 0, 0], ...]
    preprocessing  {"name": "caffe", "channel_order": "BGR", "scale": 255.0, ...}

``build_model(name, weights="x.safetensors")`` loads it back (and takes its preprocessing);
:func:`fcnkit.runtime.checkpoint.load_checkpoint` opens it as a checkpoint, so ``fcnkit eval``
/ ``predict`` / ``train --init-from`` accept it too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from fcnkit.atomic import atomic_path
from fcnkit.models.preprocess import PREPROCESSINGS, preprocessing_from
from fcnkit.models.weights import SAFETENSORS_FORMAT

__all__ = ["checkpoint_from_model", "export_safetensors"]


def export_safetensors(
    checkpoint: Mapping[str, Any], path: str | os.PathLike[str]
) -> Path:
    """Write ``checkpoint``'s weights and metadata to ``path`` atomically.

    Args:
        checkpoint: a dict with ``model_state`` and ``model_config`` (and optionally
            ``classes``, ``palette``), e.g. from :func:`fcnkit.runtime.checkpoint.load_checkpoint`.
        path: the ``.safetensors`` file to write.

    Returns:
        The path written.
    """
    config = dict(checkpoint["model_config"])
    for key in ("weights", "backbone_weights"):
        config.pop(key, None)  # the file holds the weights itself
    metadata = {
        "format": SAFETENSORS_FORMAT,
        "model_config": json.dumps(config, sort_keys=True),
        "classes": json.dumps(list(checkpoint.get("classes") or [])),
        "palette": json.dumps([list(map(int, c)) for c in checkpoint.get("palette") or []]),
        "preprocessing": json.dumps(
            preprocessing_from(config.get("preprocessing")).to_dict()),
    }
    # safetensors stores each tensor once, contiguous (no shared storage).
    state = {k: v.detach().cpu().contiguous().clone() for k, v in
             checkpoint["model_state"].items()}
    target = Path(path)
    with atomic_path(target) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return target


def checkpoint_from_model(
    model: torch.nn.Module, model_config: Mapping[str, Any], *,
    classes: list[str] | None = None, palette: list[list[int]] | None = None,
) -> dict[str, Any]:
    """A checkpoint-shaped dict for :func:`export_safetensors` from a built model (e.g. one
    built with foreign ``weights=``); its ``preprocessing`` goes into ``model_config``."""
    config = {k: v for k, v in model_config.items() if k not in ("weights", "backbone_weights")}
    preprocessing = getattr(model, "preprocessing", None)
    if preprocessing is not None:
        # A checkpoint's model_config holds plain values (load_checkpoint refuses a dict
        # there): a named preset by its name, the fields only for a custom one.
        named = PREPROCESSINGS.get(preprocessing.name) == preprocessing
        config["preprocessing"] = preprocessing.name if named else preprocessing.to_dict()
    return {"model_state": model.state_dict(), "model_config": config,
            "classes": list(classes or []), "palette": list(palette or [])}
