"""Fixtures of the CLI contract tests (the harness is tests/cli/cli_contract.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def contract_world(tmp_path_factory) -> dict[str, Path]:
    """A tiny synthetic dataset (6 train / 2 val, 32x32) and a 1-step checkpoint of it."""
    from fcnkit.data.synthetic import generate_synthetic_dataset
    from fcnkit.training.config import TrainConfig
    from fcnkit.training.loop import train

    root = tmp_path_factory.mktemp("contract")
    data = generate_synthetic_dataset(root / "data", train=6, val=2, size=(32, 32), seed=0,
                                      workers=0)
    run = root / "run"
    train(TrainConfig(data=f"synth:{data}", model="fcn32s", epochs=1, batch_size=2, crop=(32, 32),
                      workers=0, max_steps_per_epoch=1, progress=False, out=str(run)))
    images = root / "images"
    images.mkdir()
    for name in sorted((data / "JPEGImages").iterdir())[:2]:
        (images / name.name).write_bytes(name.read_bytes())
    return {"root": root, "data": data, "run": run, "ckpt": run / "last.pt", "images": images}
