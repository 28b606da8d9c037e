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
}


@pytest.mark.parametrize("changes", list(CRAFTED.values()), ids=list(CRAFTED))
def test_crafted_fields_are_refused_naming_the_file(tmp_path, changes, monkeypatch):
    path = tmp_path / "crafted.pt"
    save_checkpoint(path, _payload(**changes))

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built from a crafted checkpoint")

    monkeypatch.setattr("fcnkit.models.build_model", no_model)
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
