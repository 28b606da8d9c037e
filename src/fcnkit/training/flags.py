"""``fcnkit train``'s flags and the TrainConfig they stand for, both ways.

* :func:`config_from_flags`: the settings a user gave (flag name → value, absent flags
  left out) over the resumed run's settings (``resume``), or over the model and backbone
  a foreign ``init_from`` file names and the recipe's defaults
  (:func:`fcnkit.training.recipe.with_recipe_defaults`).
* :func:`config_to_argv`: the flags that rebuild a TrainConfig, to start the same run in
  worker processes (``fcnkit train --nproc N`` relaunches itself through torchrun).

Round trip: ``config_from_flags(parsed(config_to_argv(c))) == c`` for every config without
``model_options``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fcnkit.errors import InputError
from fcnkit.models.weights import foreign_architecture, read_state_file
from fcnkit.training.config import AUTO_RESUME, TrainConfig
from fcnkit.training.recipe import with_recipe_defaults
from fcnkit.training.rundir import auto_resume_path, resume_config

__all__ = ["FLAG_FIELDS", "PAIR_FIELDS", "config_from_flags", "config_to_argv", "foreign_model"]

#: TrainConfig fields that are a ``--flag`` (``model_options`` is library-only).
FLAG_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "model_options")
#: Fields whose flag value is a comma-separated pair of numbers.
PAIR_FIELDS = frozenset({"crop", "scale_range"})


def config_from_flags(given: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig of the flags ``given`` (TrainConfig field → value; absent flags are
    left out, not None).

    With ``resume``, the flags not given come from the resumed run's config;
    ``resume="auto"`` does so when the run directory holds a ``last.pt`` (a restarted
    torchrun worker group lands here) and starts fresh otherwise. A fresh run needs
    ``data``; a torchvision / pytorch-fcn ``init_from`` file names its model and backbone
    unless both are given, and the recipe's settings fill in what the flags leave open.

    Raises:
        InputError: no ``data`` for a fresh run; a resume checkpoint that is missing or
            holds no usable config.
    """
    given = dict(given)
    resume = given.get("resume")
    if resume == AUTO_RESUME:
        found = auto_resume_path(TrainConfig(**{"data": "", **given}))
        if found is not None:
            return resume_config(found).replace(**{"stop_after": None, **given})
    elif resume is not None:
        # The run continues where the user pointed (a copy of a run writes into the copy),
        # not into the directory stored in the checkpoint.
        path = Path(resume).expanduser()
        given.setdefault("out", str(path if path.is_dir() else path.parent))
        # A run stopped early resumes to its schedule's end unless told to stop again.
        return resume_config(resume).replace(**{"stop_after": None, **given})
    if "data" not in given:
        raise InputError("--data is required (e.g. --data synth:DIR); or pass --resume RUN_DIR")
    if "init_from" in given and not ("model" in given and "backbone" in given):
        # The loop fills in the other options such a file needs.
        given = {**foreign_model(given["init_from"]), **given}
    return TrainConfig(**with_recipe_defaults(given))


def foreign_model(path: str) -> dict[str, Any]:
    """``model`` and ``backbone`` of a torchvision / pytorch-fcn weights file, else {}."""
    arch = foreign_architecture(read_state_file(Path(path).expanduser(), "init_from"))
    return {} if arch is None else {"model": arch["name"], "backbone": arch["backbone"]}


def config_to_argv(config: TrainConfig) -> list[str]:
    """The ``fcnkit train`` flags that rebuild ``config`` (used to launch DDP workers).

    Raises:
        InputError: ``config.model_options`` is not empty (no flag carries them).
    """
    argv: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "model_options":
            if value:
                raise InputError("model options beyond --backbone/--upsample cannot be "
                                 "passed to worker processes; use torchrun with the library")
            continue
        if value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif f.name in PAIR_FIELDS:
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv
