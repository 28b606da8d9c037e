"""A run directory holds no symlinks fcnkit writes through; metrics.jsonl readers skip and
count bad lines; ``--resume DIR`` writes into DIR."""

from __future__ import annotations

import json

import pytest
import torch

from fcnkit.errors import FcnkitWarning, InputError
from fcnkit.runtime.checkpoint import save_checkpoint
from fcnkit.training.config import TrainConfig
from fcnkit.training.flags import config_from_flags
from fcnkit.training.rundir import RunLock, resolve_run_dir
from fcnkit.training.runlog import RunLog, read_run_log, read_run_log_counted


@pytest.fixture
def victim(tmp_path):
    file = tmp_path / "elsewhere" / "precious.txt"
    file.parent.mkdir()
    file.write_text("do not touch\n")
    return file


def test_a_lock_file_that_is_a_symlink_is_refused(tmp_path, victim):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(victim)
    with pytest.raises(InputError, match=r"lock file .*\.lock is a symbolic link") as info:
        RunLock(run).acquire()
    assert "\n" not in str(info.value)
    assert victim.read_text() == "do not touch\n"


def test_a_metrics_log_that_is_a_symlink_is_refused(tmp_path, victim):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(InputError, match="metrics.jsonl is a symbolic link"):
        RunLog.open(run / "metrics.jsonl", keep_up_to_step=0)
    assert victim.read_text() == "do not touch\n"


def test_the_run_log_still_cuts_and_appends(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"kind": "step", "step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3)]
    path.write_text("".join(lines))
    log = RunLog.open(path, keep_up_to_step=2)
    log.append({"kind": "step", "step": 3, "loss": 0.5})
    log.close()
    assert [r["step"] for r in read_run_log(path)] == [1, 2, 3]
    assert [r["loss"] for r in read_run_log(path)][-1] == 0.5


BAD_LINES = {
    "array": b"[1, 2, 3]\n",
    "string": b'"step"\n',
    "non-UTF-8": b'{"kind": "step", "step": 4, "note": "\xff\xfe"}\n',
    "step a string": b'{"kind": "step", "step": "5", "loss": 1.0}\n',
    "step negative": b'{"kind": "step", "step": -5, "loss": 1.0}\n',
    "step a bool": b'{"kind": "step", "step": true, "loss": 1.0}\n',
    "loss a string": b'{"kind": "step", "step": 6, "loss": "low"}\n',
    "miou a list": b'{"kind": "epoch", "step": 7, "epoch": 1, "miou": [0.5]}\n',
    "no step": b'{"kind": "step", "loss": 1.0}\n',
}


def test_bad_metrics_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "metrics.jsonl"
    good = [{"kind": "step", "step": 1, "loss": 0.5, "lr": 0.01},
            {"kind": "epoch", "step": 2, "epoch": 1, "miou": None, "train_loss": 0.4}]
    body = json.dumps(good[0]).encode() + b"\n" + b"".join(BAD_LINES.values())
    body += json.dumps(good[1]).encode() + b"\n" + b'{"kind": "st'  # torn last line
    path.write_bytes(body)
    records, bad = read_run_log_counted(path)
    assert records == good
    assert bad == len(BAD_LINES) + 1
    with pytest.warns(FcnkitWarning, match=f"{len(BAD_LINES) + 1} unreadable line"):
        assert read_run_log(path) == good


def test_resume_of_a_copied_run_writes_into_the_copy(tmp_path):
    original = tmp_path / "A"
    copy = tmp_path / "COPY"
    config = TrainConfig(data="synth:somewhere", model="fcn32s", out=str(original))
    copy.mkdir()
    save_checkpoint(copy / "last.pt", {
        "model_state": {"w": torch.zeros(1)},
        "model_config": {"name": "fcn32s", "num_classes": 2},
        "config": json.loads(config.to_json()), "epoch": 1, "step": 1,
    })
    resumed = config_from_flags({"resume": str(copy)})
    assert resolve_run_dir(resumed) == copy
    from_file = config_from_flags({"resume": str(copy / "last.pt")})
    assert resolve_run_dir(from_file) == copy
    # an explicit --out still decides
    elsewhere = config_from_flags({"resume": str(copy), "out": str(tmp_path / "B")})
    assert resolve_run_dir(elsewhere) == tmp_path / "B"
