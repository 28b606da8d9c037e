"""``fcnkit reproduce``: the claims of the FCN material, each one command.

One module per claim, each with ``run(config) -> results dict`` that also writes
``results.json``, ``results.md`` (table and verdict) and its figures into ``config.out``.
docs/reproductions.md records the runs.
"""

from __future__ import annotations

import importlib
from typing import Any

from fcnkit.errors import InputError
from fcnkit.reproduce.runner import Budget, ReproduceConfig

#: Claim name -> module (under fcnkit.reproduce) and whether it trains models.
CLAIMS: dict[str, tuple[str, bool]] = {
    "matrix": ("matrix", False),
    "receptive-fields": ("receptive_fields", False),
    "skips": ("skips", True),
    "upsampling": ("upsampling", True),
    "gridding": ("gridding", True),
    "padding": ("padding", True),
}

__all__ = ["CLAIMS", "Budget", "ReproduceConfig", "run_claim"]


def run_claim(name: str, config: ReproduceConfig) -> dict[str, Any]:
    """Run one claim; returns its results (also written to ``config.out``)."""
    if name not in CLAIMS:
        raise InputError(f"unknown claim {name!r}; choose one of {', '.join(CLAIMS)}")
    module = importlib.import_module(f"fcnkit.reproduce.{CLAIMS[name][0]}")
    return module.run(config)
