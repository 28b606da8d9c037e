"""Defects found reviewing ``fcnkit train`` and its run directory (one test per defect)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from torch.utils.data import DataLoader

from fcnkit.data import open_dataset
from fcnkit.data.transforms import eval_transform, pad_collate
from fcnkit.inference.evaluate import evaluate
from fcnkit.runtime.checkpoint import load_checkpoint, model_from_checkpoint


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update({"FCNKIT_DIST_TIMEOUT": "120", "OMP_NUM_THREADS": "1", **extra})
    return env


@pytest.mark.slow
def test_ddp_validation_metrics_are_those_of_the_saved_checkpoint(synthetic_data, tmp_path):
    """Under DDP every rank keeps its own BatchNorm running statistics after the last
    step; the checkpoint holds rank 0's. The all-reduced validation must score the model
    that is saved, so that ``fcnkit eval`` of last.pt gives the metrics the run logged."""
    data = synthetic_data(train=12, val=4, seed=0, size=(64, 80))
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "fcnkit", "train", "--nproc", "2", "--data", f"voc:{data}",
           "--width", "0.25", "--epochs", "2", "--batch-size", "2", "--crop", "64,64",
           "--max-steps-per-epoch", "3", "--workers", "0", "--threads", "1",
           "--precision", "fp32", "--no-progress", "--out", str(run)]
    proc = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(run / "last.pt")
    model = model_from_checkpoint(ckpt)
    val = open_dataset(f"voc:{data}", "val", transform=eval_transform())
    loader = DataLoader(val, batch_size=1, collate_fn=pad_collate)
    cm = evaluate(model, loader, num_classes=ckpt["model_config"]["num_classes"])
    assert np.array_equal(np.asarray(cm.matrix), np.array(ckpt["metrics"]["confusion"]))


def _argv(data, run, *extra):
    return ["train", "--data", f"voc:{data}", "--model", "fcn32s", "--width", "0.25",
            "--batch-size", "2", "--crop", "32,32", "--workers", "0", "--no-progress",
            "--threads", "1", "--max-steps-per-epoch", "1", "--precision", "fp32",
            "--out", str(run), *extra]


@pytest.mark.slow  # trains end to end
def test_fresh_run_over_an_old_run_leaves_no_mix_of_the_two(tiny_data, tmp_path, capsys,
                                                            private_copy):
    """A fresh run (no --resume) into a directory that holds another run truncates
    metrics.jsonl and writes its config.json at once; if it then fails before its first
    epoch, the old run's last.pt/best.pt must not stay beside them (error.txt would tell
    to resume them, and --resume auto would continue the other run)."""
    from fcnkit.cli import main

    run = tmp_path / "run"
    assert main(_argv(tiny_data, run, "--epochs", "1")) == 0
    assert (run / "last.pt").is_file()
    bad = private_copy(tiny_data, "bad")
    ids = (bad / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    for name in ids:
        victim = bad / "JPEGImages" / f"{name}.jpg"
        victim.write_bytes(victim.read_bytes()[:50])
    capsys.readouterr()
    assert main(_argv(bad, run, "--epochs", "2", "--max-steps-per-epoch", "3")) == 2
    assert not (run / "last.pt").exists() and not (run / "best.pt").exists()
    text = (run / "error.txt").read_text()
    assert "no epoch completed" in text


@pytest.mark.slow  # trains end to end
@pytest.mark.parametrize("raised, word", [(KeyboardInterrupt(), "interrupted"),
                                          (SystemExit(143), "terminated")])
def test_interrupted_run_leaves_error_txt(tiny_data, tmp_path, monkeypatch, raised, word):
    """SIGINT (KeyboardInterrupt) and SIGTERM (SystemExit 143 from the command line's
    handler) mid-epoch: error.txt says the run was stopped and how to resume, as for any
    other stop (torchrun stops the other ranks of a failed group with SIGTERM)."""
    import fcnkit.training.loop as loop

    original = loop.train_step
    calls = []

    def stopping(state, images, masks):
        calls.append(1)
        if len(calls) == 2:  # the first step of epoch 2
            raise raised
        return original(state, images, masks)

    monkeypatch.setattr(loop, "train_step", stopping)
    from fcnkit.cli import build_parser
    from fcnkit.cli.train import config_from_args

    run = tmp_path / "run"
    config = config_from_args(build_parser().parse_args(_argv(tiny_data, run, "--epochs", "3")))
    with pytest.raises(type(raised)):
        loop.train(config)
    text = (run / "error.txt").read_text()
    assert word in text and f"--resume {run}" in text
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


@pytest.mark.slow  # trains end to end
def test_bad_input_leaves_a_finished_run_untouched(tiny_data, tmp_path, capsys):
    """A flag refused before anything is written (exit 2) must not leave error.txt in the
    run directory it names: the finished run did not stop, nothing there has changed."""
    from fcnkit.cli import main

    run = tmp_path / "run"
    assert main(_argv(tiny_data, run, "--epochs", "1")) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(_argv(tiny_data, run, "--epochs", "1", "--class-weights", "1,2")) == 2
    assert main(["train", "--resume", str(run), "--class-weights", "1,2"]) == 2
    assert main(["train", "--resume", str(run), "--model", "fcn16s"]) == 2
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "error:" in line]) == 3, err
    # An optimizer state that does not fit names the flag that differs from the run's.
    assert main(["train", "--resume", str(run), "--epochs", "2", "--optimizer", "adamw"]) == 2
    err = capsys.readouterr().err
    assert "--optimizer adamw" in err and "sgd" in err, err
    assert not (run / "error.txt").exists()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.slow  # starts worker processes
def test_distributed_run_into_a_locked_directory_is_one_line_per_rank(tiny_data, tmp_path):
    """Rank 0 refuses a run directory another run holds; the other ranks must stop with a
    line too, not a gloo traceback from the next collective (DDP's constructor) that rank
    0 never joins. ``--nproc`` refuses it before any worker starts."""
    from fcnkit.training.rundir import RunLock

    run = tmp_path / "run"
    flags = ["train", "--data", f"voc:{tiny_data}", "--model", "fcn32s", "--width", "0.25",
             "--epochs", "1", "--batch-size", "2", "--crop", "32,32", "--workers", "0",
             "--threads", "1", "--no-progress", "--precision", "fp32", "--out", str(run)]
    with RunLock(run):
        launched = subprocess.run([sys.executable, "-m", "fcnkit", *flags, "--nproc", "2"],
                                  env=_clean_env(), capture_output=True, text=True, timeout=300)
        torchrun = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
             "2", "-m", "fcnkit", *flags], env=_clean_env(), capture_output=True, text=True,
            timeout=300)
    assert launched.returncode == 2, launched.stderr[-3000:]
    assert launched.stderr.count("error:") == 1 and "in use" in launched.stderr
    assert "rank" not in launched.stderr  # refused before any worker started
    # torchrun's own summary is a traceback of its ChildFailedError; the ranks print lines.
    ours = [line for line in torchrun.stderr.splitlines() if "fcnkit train: error:" in line]
    assert torchrun.returncode != 0 and "[rank1]" not in torchrun.stderr, torchrun.stderr[-3000:]
    # Rank 0 prints its line and exits; torchrun then stops rank 1 (SIGTERM), which races
    # rank 1's own line: one or two lines, never rank 1's gloo traceback.
    assert 1 <= len(ours) <= 2 and all("in use" in line for line in ours), ours


@pytest.mark.parametrize("last", [b"not a zip" * 10, None])
def test_unreadable_last_pt_points_to_best_pt(tmp_path, last):
    """A run directory whose last.pt is truncated (or missing) but whose best.pt is there:
    the refusal says how to resume from best.pt, for --resume RUN and --resume auto."""
    from fcnkit.errors import InputError
    from fcnkit.training.flags import config_from_flags

    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"stand-in")
    if last is not None:
        (run / "last.pt").write_bytes(last)
    best = f"--resume {run / 'best.pt'}"
    with pytest.raises(InputError, match="best epoch") as caught:
        config_from_flags({"resume": str(run)})
    assert best in str(caught.value) and "\n" not in str(caught.value)
    if last is not None:
        with pytest.raises(InputError, match="best epoch"):
            config_from_flags({"resume": "auto", "out": str(run), "data": "synth:x"})


def test_tensorboard_missing_is_refused_before_the_run_directory_is_written(
        tiny_data, tmp_path, monkeypatch):
    """--tensorboard without the tensorboard package: one line, and no config.json or
    empty metrics.jsonl left behind (in an old run's directory: its files unchanged)."""
    from fcnkit.errors import InputError
    from fcnkit.training.config import TrainConfig
    from fcnkit.training.loop import train

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    run = tmp_path / "run"
    config = TrainConfig(data=f"voc:{tiny_data}", model="fcn32s", width=0.25, epochs=1,
                         batch_size=2, crop=(32, 32), workers=0, progress=False,
                         tensorboard=True, out=str(run))
    with pytest.raises(InputError, match="tensorboard package"):
        train(config)
    assert not run.exists()


@pytest.mark.slow  # trains end to end
def test_report_of_a_stopped_run_says_it_did_not_finish(tiny_data, tmp_path, capsys):
    """fcnkit report of a run that stopped (error.txt) warns that it did not finish; a
    finished run gets no such warning."""
    from fcnkit.cli import main

    run = tmp_path / "run"
    assert main(_argv(tiny_data, run, "--epochs", "1")) == 0
    capsys.readouterr()
    assert main(["report", str(run), "--gallery", "0"]) == 0
    assert "did not finish" not in capsys.readouterr().err
    (run / "error.txt").write_text("2026-01-01 00:00:00 training stopped: interrupted (SIGINT)\n"
                                   f"last.pt/best.pt hold ...; --resume {run}\n")
    assert main(["report", str(run), "--gallery", "0", "--force"]) == 0
    err = capsys.readouterr().err
    assert "did not finish (interrupted (SIGINT))" in err and f"--resume {run}" in err


@pytest.fixture(scope="module")
def tiny_data(synthetic_data):
    return synthetic_data(train=6, val=3, seed=3, size=(40, 56))
