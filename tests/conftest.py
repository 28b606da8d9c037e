"""Session-wide test set-up: hypothesis profiles and the shared synthetic data and run.

Hypothesis: the "ci" profile (60 examples per property) when ``CI=true``, else the smaller
"dev" profile (20) so the local loop stays fast; ``HYPOTHESIS_PROFILE`` (dev, ci, thorough)
overrides both. Tests run on 2 CPU cores: no per-example deadline (torch's first call is
slow).

Fixtures (each built once per test session, on first use):

* ``synthetic_data(train=, val=, seed=, size=, task=)`` -> the directory of a synthetic VOC
  layout dataset (:func:`fcnkit.data.generate_synthetic_dataset`), one per distinct set of
  arguments;
* ``tiny_run`` -> a 1-step FCN-32s training run on the 6/2-image 32x32 dataset: its data,
  run directory, ``last.pt`` and an ``images`` folder of two of its JPEGs;
* ``private_copy(path)`` -> a copy of a shared dataset or run under the test's ``tmp_path``.
  A test that changes files must change its copy: the shared ones serve every test;
* ``fresh_interpreter`` -> the results of the checks that need a fresh interpreter (which
  modules an import loads, warnings printed once per process), all from one child process
  (tests/fresh_interpreter.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("MPLBACKEND", "Agg")
# --precision auto may calibrate and cache its choice: never in the user's ~/.cache.
os.environ.setdefault("FCNKIT_PRECISION_CACHE", os.path.join(
    tempfile.mkdtemp(prefix="fcnkit-precision-"), "precision.json"))

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=60, **_COMMON)
settings.register_profile("dev", max_examples=20, **_COMMON)
settings.register_profile("thorough", deadline=None, max_examples=500)
settings.load_profile(os.environ.get(
    "HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI", "").lower() == "true" else "dev"))


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """``synthetic_data(train=6, val=3, seed=3, size=(40, 56), task=None) -> Path``: a
    synthetic dataset generated once per session for each distinct set of arguments."""
    from fcnkit.data.synthetic import generate_synthetic_dataset

    made: dict[tuple, Path] = {}

    def make(*, train: int = 6, val: int = 3, seed: int = 3,
             size: tuple[int, int] = (40, 56), task: str | None = None) -> Path:
        key = (train, val, seed, tuple(size), task)
        if key not in made:
            root = tmp_path_factory.mktemp(f"synth-{train}-{val}-{seed}-{size[0]}x{size[1]}")
            extra = {} if task is None else {"task": task}
            generate_synthetic_dataset(root, train=train, val=val, seed=seed, size=tuple(size),
                                       workers=1, **extra)
            made[key] = root
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_run(synthetic_data, tmp_path_factory) -> dict[str, Path]:
    """A 1-step FCN-32s run on a 6/2-image 32x32 dataset, trained once per session:
    ``{"root", "data", "run", "ckpt", "images"}`` (read-only: see ``private_copy``)."""
    from fcnkit.training.config import TrainConfig
    from fcnkit.training.loop import train

    data = synthetic_data(train=6, val=2, seed=0, size=(32, 32))
    root = tmp_path_factory.mktemp("tiny_run")
    run = root / "run"
    train(TrainConfig(data=f"synth:{data}", model="fcn32s", epochs=1, batch_size=2, crop=(32, 32),
                      workers=0, max_steps_per_epoch=1, progress=False, out=str(run)))
    images = root / "images"
    images.mkdir()
    for name in sorted((data / "JPEGImages").iterdir())[:2]:
        (images / name.name).write_bytes(name.read_bytes())
    return {"root": root, "data": data, "run": run, "ckpt": run / "last.pt", "images": images}


@pytest.fixture
def private_copy(tmp_path):
    """``private_copy(path, name=None) -> Path``: a copy of a shared directory under this test's
    ``tmp_path``, for a test that modifies files (the shared one stays intact)."""

    def copy(path: Path, name: str | None = None) -> Path:
        target = tmp_path / (name or Path(path).name)
        shutil.copytree(path, target)
        return target

    return copy


@pytest.fixture(scope="session")
def fresh_interpreter(tmp_path_factory) -> dict[str, dict]:
    """check name -> {"value", "error", "stdout", "stderr"}: tests/fresh_interpreter.py's
    checks, run once per session in one child interpreter (each in its own fork of it)."""
    script = Path(__file__).with_name("fresh_interpreter.py")
    workdir = tmp_path_factory.mktemp("fresh_interpreter")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run([sys.executable, str(script), str(workdir)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def fresh_check(fresh_interpreter):
    """``fresh_check(name) -> (value, stderr)`` of one check, failing with its traceback if it
    raised."""

    def get(name: str):
        result = fresh_interpreter[name]
        assert result["error"] is None, result["error"]
        return result["value"], result["stderr"]

    return get
