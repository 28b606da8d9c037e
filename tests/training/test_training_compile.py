"""``train --compile``: the config field and flag, the checks before compiling, and a
tiny compiled training against the same training in eager mode."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

import fcnkit.training.loop as train_mod
from fcnkit.cli import build_parser
from fcnkit.cli.train import config_from_args
from fcnkit.data import generate_synthetic_dataset
from fcnkit.errors import InputError
from fcnkit.runtime.checkpoint import load_checkpoint
from fcnkit.training import setup
from fcnkit.training.config import TrainConfig
from fcnkit.training.flags import config_to_argv


def test_compile_field_values_and_flag_round_trip() -> None:
    assert TrainConfig(data="d").compile == "off"
    assert TrainConfig(data="d", compile=True).compile == "on"
    assert TrainConfig(data="d", compile=False).compile == "off"
    with pytest.raises(InputError, match="compile='yes' must be one of off, on, auto"):
        TrainConfig(data="d", compile="yes")
    config = TrainConfig(data="synth:x", compile="auto")
    argv = config_to_argv(config)
    assert argv[argv.index("--compile") + 1] == "auto"
    parsed = config_from_args(build_parser().parse_args(["train", *argv]))
    assert parsed == config


def test_resolve_compile() -> None:
    cpu = torch.device("cpu")
    assert setup.resolve_compile("on", cpu)[0] is True
    assert setup.resolve_compile("off", cpu) == (False, "off")
    on, reason = setup.resolve_compile("auto", cpu)
    assert on is False and "not yet measured" in reason


def test_no_cxx_compiler_is_one_clear_line(monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="--compile needs a C\\+\\+ compiler"):
        setup.compile_for_training(nn.Conv2d(3, 2, 1), torch.device("cpu"))


def test_compiler_failure_at_the_first_step_is_one_line() -> None:
    from torch._dynamo.exc import BackendCompilerFailed

    class Failing(nn.Module):
        def forward(self, x):
            raise BackendCompilerFailed("inductor", RuntimeError("cc1plus: fatal error\nmore"),
                                        None)

    state = type("S", (), {"model": Failing()})()
    with pytest.raises(InputError, match=r"^--compile: torch.compile could not compile the "
                                         r"model \(.*cc1plus: fatal error.*\); train without"):
        train_mod.compiled_call(state, torch.zeros(1))


@pytest.mark.slow  # inductor compiles forward and backward: tens of seconds on 2 cores
def test_compiled_training_matches_eager(tmp_path) -> None:
    data = tmp_path / "synth"
    generate_synthetic_dataset(data, train=6, val=2, seed=3, size=(40, 56), workers=1)

    def run(out, compile_):
        return train_mod.train(TrainConfig(
            data=f"voc:{data}", model="fcn8s", backbone="resnet18", epochs=1, batch_size=3,
            lr=0.01, crop=(32, 32), scale_range=(1.0, 1.0), hflip=False, color_jitter=False,
            out=str(tmp_path / out), workers=0, progress=False, log_every=1, threads=1,
            seed=5, precision="fp32", channels_last="off", compile=compile_))

    eager, compiled = run("eager", "off"), run("compiled", "on")

    def losses(result):
        lines = (tmp_path / result).joinpath("metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "step"]

    a, b = losses("eager"), losses("compiled")
    assert len(a) == len(b) == 2
    # Same data, same initial weights; inductor fuses and reorders float32 arithmetic, so
    # the losses agree to rounding, not bit for bit: 1e-3 relative over two SGD steps.
    assert b == pytest.approx(a, rel=1e-3)
    ea, eb = load_checkpoint(eager["last"]), load_checkpoint(compiled["last"])
    # The checkpoint holds the un-compiled module's state_dict: same keys, no "_orig_mod."
    assert list(ea["model_state"]) == list(eb["model_state"])
    # Weights: BatchNorm over batches of three 32x32 crops amplifies rounding in single
    # weights (up to ~1e-3 seen), so compare the whole state: relative L2 distance < 1e-3.
    floats = [k for k, v in ea["model_state"].items() if v.is_floating_point()]
    wa = torch.cat([ea["model_state"][k].flatten() for k in floats])
    wb = torch.cat([eb["model_state"][k].flatten() for k in floats])
    assert torch.linalg.vector_norm(wb - wa) <= 1e-3 * torch.linalg.vector_norm(wa)
