"""Checkpoint save/load: weights_only round trip, atomicity, RNG state, bad files."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest
import torch
from torch import nn

from fcnkit.errors import InputError
from fcnkit.runtime import checkpoint as ck


class TinyNet(nn.Module):
    """Stand-in for a registry model: a 3x3 conv then a 1x1 score layer."""

    def __init__(self, num_classes: int, width: int = 4) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.score = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        return self.score(torch.relu(self.bn(self.body(x))))


def fake_build_model(name, *, num_classes, width=4, weights=None, backbone_weights=None):
    if name != "tiny":
        raise ValueError(f"unknown model {name!r}")
    assert weights is None and backbone_weights is None
    return TinyNet(num_classes, width)


@pytest.fixture
def tiny_registry(monkeypatch):
    # where runtime.checkpoint looks the builder up
    monkeypatch.setattr(ck, "build_model", fake_build_model)


def make_payload(num_classes=3, width=4, seed=0):
    torch.manual_seed(seed)
    model = TinyNet(num_classes, width)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=10, power=0.9)
    loss = model(torch.randn(2, 3, 8, 8)).mean()
    loss.backward()
    opt.step()
    sched.step()
    return model, {
        "model_state": model.state_dict(),
        "model_config": {"name": "tiny", "num_classes": num_classes, "width": width},
        "classes": [f"c{i}" for i in range(num_classes)],
        "palette": [[i, 2 * i, 3 * i] for i in range(num_classes)],
        "config": {"lr": 0.1, "crop": (32, 32), "data": "synth:/tmp/x"},
        "epoch": 1,
        "step": 1,
        "optimizer_state": opt.state_dict(),
        "scheduler_state": sched.state_dict(),
        "rng_state": ck.capture_rng_state(),
        "metrics": {"miou": 0.5, "iou": [0.1, float("nan"), 0.9]},
    }


def test_round_trip_loads_with_plain_weights_only(tmp_path):
    model, payload = make_payload()
    path = ck.save_checkpoint(tmp_path / "run" / "last.pt", payload)
    # The oracle is torch itself: the raw file opens with weights_only=True.
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == ck.CHECKPOINT_FORMAT
    assert set(raw["model_state"]) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(raw["model_state"][k], v)
    assert raw["optimizer_state"]["param_groups"][0]["momentum"] == 0.9
    assert raw["scheduler_state"]["last_epoch"] == 1
    loaded = ck.load_checkpoint(path)
    assert loaded["path"] == str(path)
    assert loaded["classes"] == ["c0", "c1", "c2"]
    # Only the checkpoint file is left: no temporary files next to it.
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_optimizer_state_restores_into_fresh_optimizer(tmp_path):
    model, payload = make_payload()
    path = ck.save_checkpoint(tmp_path / "c.pt", payload)
    ckpt = ck.load_checkpoint(path)
    fresh = TinyNet(3)
    fresh.load_state_dict(ckpt["model_state"])
    opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    opt.load_state_dict(ckpt["optimizer_state"])
    bufs = [opt.state[p]["momentum_buffer"] for p in fresh.parameters()]
    assert all(b is not None and b.abs().sum() > 0 for b in bufs)


def test_rng_state_round_trip_through_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.random(), np.random.rand(), torch.rand(1)  # advance each generator
    _, payload = make_payload()
    payload["rng_state"] = ck.capture_rng_state()
    expected = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    path = ck.save_checkpoint(tmp_path / "c.pt", payload)
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    ck.restore_rng_state(ck.load_checkpoint(path)["rng_state"])
    got = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert torch.equal(got[2], expected[2])


def test_failed_write_leaves_previous_file(tmp_path, monkeypatch):
    _, payload = make_payload()
    path = ck.save_checkpoint(tmp_path / "last.pt", payload)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(path, {**payload, "epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_save_rejects_non_plain_objects(tmp_path):
    _, payload = make_payload()
    with pytest.raises(ValueError, match=r"config.*holds a"):
        ck.save_checkpoint(tmp_path / "c.pt", {**payload, "config": {"x": object()}})
    with pytest.raises(ValueError, match="lacks model_config"):
        ck.save_checkpoint(tmp_path / "c.pt", {"model_state": {}})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "does not exist"),
        (b"", "cannot be read"),
        (b"not a zip file at all", "cannot be read"),
    ],
)
def test_missing_and_corrupt_files(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=match) as info:
        ck.load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_checkpoint(tmp_path):
    _, payload = make_payload()
    path = ck.save_checkpoint(tmp_path / "c.pt", payload)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot be read"):
        ck.load_checkpoint(path)


def test_directory_and_foreign_files(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        ck.load_checkpoint(tmp_path)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(InputError, match="not a fcnkit checkpoint"):
        ck.load_checkpoint(plain)
    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2), tensor_only)
    with pytest.raises(InputError, match="not a fcnkit checkpoint"):
        ck.load_checkpoint(tensor_only)
    incomplete = tmp_path / "incomplete.pt"
    torch.save({"format": ck.CHECKPOINT_FORMAT, "model_state": {}}, incomplete)
    with pytest.raises(InputError, match="lacks model_config"):
        ck.load_checkpoint(incomplete)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": ck.CHECKPOINT_FORMAT, "model_state": {}, "model_config": Evil()}, path)
    with pytest.raises(InputError, match="pickled objects"):
        ck.load_checkpoint(path)


def test_model_from_checkpoint_rebuilds_identical_model(tmp_path, tiny_registry):
    model, payload = make_payload(num_classes=3, width=5)
    path = ck.save_checkpoint(tmp_path / "c.pt", payload)
    rebuilt = ck.model_from_checkpoint(ck.load_checkpoint(path), num_classes=3, name="tiny")
    assert not rebuilt.training
    x = torch.randn(1, 3, 16, 16)
    model.eval()
    assert torch.equal(rebuilt(x), model(x))
    # A path works as well as a loaded dict.
    assert isinstance(ck.model_from_checkpoint(path), TinyNet)


def test_model_from_checkpoint_mismatches(tmp_path, tiny_registry):
    _, payload = make_payload(num_classes=3)
    path = ck.save_checkpoint(tmp_path / "c.pt", payload)
    ckpt = ck.load_checkpoint(path)
    with pytest.raises(InputError, match=r"is a tiny for 3 classes, but the data has 5") as e:
        ck.model_from_checkpoint(ckpt, num_classes=5)
    assert str(path) in str(e.value)
    # A folder dataset whose masks miss the last classes counts too few: say what fixes it.
    assert "list every class in classes.txt" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match=r"not a fcn8s"):
        ck.model_from_checkpoint(ckpt, name="fcn8s")
    # Weights of another width do not fit the model the config describes.
    _, other = make_payload(num_classes=3, width=6)
    bad = {**payload, "model_state": other["model_state"]}
    bad_path = ck.save_checkpoint(tmp_path / "bad.pt", bad)
    with pytest.raises(InputError, match="weights do not fit"):
        ck.model_from_checkpoint(ck.load_checkpoint(bad_path))
    unknown = {**payload, "model_config": {"name": "nosuch", "num_classes": 3}}
    with pytest.raises(InputError, match="cannot build"):
        ck.model_from_checkpoint(unknown)


def test_resolve_checkpoint_path(tmp_path):
    _, payload = make_payload()
    ck.save_checkpoint(tmp_path / "last.pt", payload)
    assert ck.resolve_checkpoint_path(tmp_path) == tmp_path / "last.pt"
    assert ck.resolve_checkpoint_path(tmp_path / "last.pt") == tmp_path / "last.pt"
    with pytest.raises(InputError, match="holds no best.pt"):
        ck.resolve_checkpoint_path(tmp_path, name="best.pt")
    with pytest.raises(InputError, match="does not exist"):
        ck.resolve_checkpoint_path(tmp_path / "nope")


def test_training_checkpoint_is_the_one_schema(tmp_path):
    """TrainingCheckpoint writes the keys the module docstring documents, and reads back."""
    _, payload = make_payload()
    state = ck.TrainingCheckpoint.from_payload({**payload, "format": ck.CHECKPOINT_FORMAT})
    path = ck.save_checkpoint(tmp_path / "last.pt", state.to_payload())
    raw = torch.load(path, weights_only=True)
    documented = re.findall(r'^\s+"(\w+)":', ck.__doc__, flags=re.MULTILINE)
    assert list(raw) == documented  # same keys, same order as the docstring's example
    back = ck.TrainingCheckpoint.from_payload(ck.load_checkpoint(path))
    assert (back.epoch, back.step, back.classes) == (1, 1, ["c0", "c1", "c2"])
    assert back.scheduler_state["last_epoch"] == 1
    for key, value in payload["model_state"].items():
        assert torch.equal(back.model_state[key], value)
    # A minimal checkpoint (format, model_state, model_config) resumes from scratch.
    minimal = ck.TrainingCheckpoint.from_payload(
        {"format": ck.CHECKPOINT_FORMAT, "model_state": {}, "model_config": {"name": "tiny"}})
    assert (minimal.epoch, minimal.step, minimal.best_miou) == (0, 0, -math.inf)
    assert minimal.optimizer_state == {} and minimal.world_size == 1
