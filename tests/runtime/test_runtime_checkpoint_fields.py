"""Checkpoints with crafted fields are refused with one line naming the file, before any
model is built."""

from __future__ import annotations

import pytest
import torch

from fcnkit.cli import main
from fcnkit.errors import InputError
from fcnkit.runtime import checkpoint as ckpt_io
from fcnkit.runtime.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint


def _payload(**changes):
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_state": {"w": torch.zeros(1)},
        "model_config": {"name": "fcn32s", "num_classes": 3},
        "classes": ["a", "b", "c"],
        "palette": [[0, 0, 0], [1, 2, 3], [4, 5, 6]],
        "config": {"data": "synth:x"},
        "epoch": 1,
        "step": 2,
    }
    for key, value in changes.items():
        if key.startswith("model_config."):
            payload["model_config"][key.split(".", 1)[1]] = value
        else:
            payload[key] = value
    return payload


CRAFTED = {
    "huge num_classes": {"model_config.num_classes": 10**9},
    "zero num_classes": {"model_config.num_classes": 0},
    "float num_classes": {"model_config.num_classes": 3.5},
    "nan option": {"model_config.scale": float("nan")},
    "bad palette value": {"palette": [[0, 0, 0], [999, 0, 0], [0, 0, 0]]},
    "short palette": {"palette": [[0, 0, 0]]},
    "palette of strings": {"palette": ["red", "green", "blue"]},
    "classes count": {"classes": ["a"]},
    "config not a dict": {"config": [1, 2, 3]},
    "negative epoch": {"epoch": -5},
    # the schemas of fcnkit.schemas: model_state and the resume fields
    "long palette": {"palette": [[0, 0, 0]] * 4},
    "model_state not tensors": {"model_state": {"w": [1.0, 2.0]}},
    "best_miou a string": {"best_miou": "0.9"},
    "metrics.miou a string": {"metrics": {"miou": "high"}},
    "rng_state a list": {"rng_state": [1, 2, 3]},
    "rng_state numpy short": {"rng_state": {"numpy": ["MT19937", [1, 2]]}},
    "rng_state torch not a tensor": {"rng_state": {"torch": [1, 2, 3]}},
    "optimizer_state a list": {"optimizer_state": [1]},
    "optimizer_state without groups": {"optimizer_state": {"state": {}}},
    "scheduler_state a string": {"scheduler_state": "cosine"},
    "world_size zero": {"world_size": 0},
    "best_epoch a float": {"best_epoch": 1.5},
}


@pytest.mark.parametrize("changes", list(CRAFTED.values()), ids=list(CRAFTED))
def test_crafted_fields_are_refused_naming_the_file(tmp_path, changes, monkeypatch):
    path = tmp_path / "crafted.pt"
    save_checkpoint(path, _payload(**changes))

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built from a crafted checkpoint")

    monkeypatch.setattr(ckpt_io, "build_model", no_model)
    with pytest.raises(InputError, match=str(path)):
        load_checkpoint(path)


def test_valid_payload_loads(tmp_path):
    save_checkpoint(tmp_path / "ok.pt", _payload())
    assert load_checkpoint(tmp_path / "ok.pt")["model_config"]["num_classes"] == 3
    assert ckpt_io.checkpoint_field_problem(_payload()) is None


def test_cli_predict_and_resume_refuse_crafted_checkpoints(tmp_path, capsys):
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, _payload(**{"model_config.num_classes": 10**9}))
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert main(["predict", "--checkpoint", str(path), str(image), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "num_classes" in err[0]
    save_checkpoint(path, _payload(config={"data": "d", "epochs": -3, "lr": float("nan")}))
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "training config" in err[0]


def test_a_field_message_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "crafted.pt"
    save_checkpoint(path, _payload(best_miou="0.9"))
    with pytest.raises(InputError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "best_miou" in message and "\n" not in message


def test_a_complete_resume_state_passes_the_schema(tmp_path):
    # The state a real optimizer, scheduler and capture_rng_state produce must pass.
    model = torch.nn.Linear(2, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    path = tmp_path / "good.pt"
    save_checkpoint(path, _payload(
        model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
        scheduler_state={k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
        rng_state=ckpt_io.capture_rng_state(), metrics={"miou": None}, best_miou=float("-inf"),
        best_epoch=None, world_size=1))
    assert load_checkpoint(path)["best_miou"] == float("-inf")


def test_optimizer_state_of_another_model_is_one_line(tmp_path):
    from fcnkit.training.setup import _load_optimizer, _restore

    other = torch.nn.Linear(4, 5)  # as many tensors as ours, other shapes
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    other(torch.ones(1, 4)).sum().backward()
    other_opt.step()
    ours = torch.optim.SGD(torch.nn.Linear(2, 3).parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(InputError, match=r"run/last.pt: its optimizer_state .*momentum_buffer"):
        _restore("run/last.pt", "optimizer_state",
                 lambda: _load_optimizer(ours, other_opt.state_dict()))
    fewer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(InputError, match="optimizer_state"):
        _restore("run/last.pt", "optimizer_state",
                 lambda: _load_optimizer(fewer, other_opt.state_dict()))
