"""DDP on CPU: 2-process gloo training on loopback, exact distributed evaluation, N→M resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from fcnkit.data import open_dataset
from fcnkit.data.transforms import eval_transform, pad_collate
from fcnkit.errors import InputError
from fcnkit.inference.evaluate import evaluate
from fcnkit.runtime import distributed as ddp
from fcnkit.runtime.checkpoint import load_checkpoint, model_from_checkpoint
from fcnkit.training.config import TrainConfig
from fcnkit.training.loop import train


@given(n=st.integers(0, 50), world=st.integers(1, 7))
def test_eval_shards_partition_the_dataset(n, world):
    shards = [list(ddp.ShardedEvalSampler(n, rank=r, world_size=world)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))  # no loss, no duplicate
    assert [len(ddp.ShardedEvalSampler(n, rank=r, world_size=world)) for r in range(world)] == [
        len(s) for s in shards]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_sampler_and_backend_arguments():
    with pytest.raises(ValueError, match="rank 2"):
        ddp.ShardedEvalSampler(5, rank=2, world_size=2)
    assert ddp.backend_for("cpu") == "gloo"
    assert ddp.backend_for("cuda:1") == "nccl"


def test_single_process_without_torchrun(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    info = ddp.init_distributed("cpu")
    assert info == ddp.DistInfo() and info.is_main and not info.distributed
    monkeypatch.setenv("FCNKIT_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="FCNKIT_DIST_TIMEOUT"):
        ddp.timeout_seconds()


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update({"FCNKIT_DIST_TIMEOUT": "120", "OMP_NUM_THREADS": "1", **extra})
    return env


@pytest.fixture(scope="module")
def tiny_data(synthetic_data):
    # 3 validation images on 2 ranks: uneven shards (2 + 1), nothing padded.
    return synthetic_data(train=8, val=3, seed=11, size=(40, 48))


@pytest.mark.slow
def test_two_process_training_resumes_on_one(tiny_data, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "fcnkit", "train", "--nproc", "2", "--data", f"voc:{tiny_data}",
           "--model", "fcn32s", "--backbone", "resnet18", "--epochs", "3",
           "--batch-size", "2", "--lr", "0.02", "--crop", "32,32", "--workers", "0",
           "--threads", "1", "--log-every", "1", "--no-progress", "--out", str(run), "--json"]
    proc = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    steps = [r for r in records if r["kind"] == "step"]
    # 8 images, 2 ranks x batch 2: 2 steps per epoch; only rank 0 wrote (no duplicate lines).
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 6
    assert not any(k.startswith("module.") for k in ckpt["model_state"])

    # The 2-process evaluation stored in the checkpoint equals a 1-process evaluation.
    model = model_from_checkpoint(ckpt)
    val = open_dataset(f"voc:{tiny_data}", "val", transform=eval_transform())
    loader = DataLoader(val, batch_size=1, collate_fn=pad_collate)
    cm = evaluate(model, loader, num_classes=ckpt["model_config"]["num_classes"])
    assert np.array_equal(np.asarray(cm.matrix), np.array(ckpt["metrics"]["confusion"]))
    assert cm.compute()["miou"] == pytest.approx(ckpt["metrics"]["miou"], abs=0)

    # Resume the 2-process checkpoint on 1 process for one more epoch.
    config = TrainConfig.from_dict(ckpt["config"]).replace(epochs=4, resume=str(run))
    result = train(config)
    resumed = load_checkpoint(Path(result["last"]))
    assert resumed["epoch"] == 4 and resumed["world_size"] == 1
    assert resumed["step"] == 6 + 4  # 1 process x batch 2 over 8 images: 4 steps
    assert any(not torch.equal(value, ckpt["model_state"][key])
               for key, value in resumed["model_state"].items())


@pytest.mark.slow
def test_failing_ranks_give_one_clear_error(tmp_path):
    cmd = [sys.executable, "-m", "fcnkit", "train", "--nproc", "2", "--data",
           f"voc:{tmp_path / 'missing'}", "--out", str(tmp_path / "run"), "--no-progress"]
    proc = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "missing" in proc.stderr and "of 2 failed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.slow
def test_rendezvous_that_cannot_form_times_out_with_one_line(tmp_path):
    import socket

    with socket.socket() as s:  # a free port nobody listens on after this block
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _clean_env(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                     MASTER_PORT=str(port), FCNKIT_DIST_TIMEOUT="3")
    cmd = [sys.executable, "-m", "fcnkit", "train", "--data", f"voc:{tmp_path}",
           "--out", str(tmp_path / "run"), "--no-progress"]
    # Rank 1 never starts: rank 0 must give up after the timeout, not hang.
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not form within 3 s" in lines[0]
    assert "MASTER_ADDR" in lines[0]


@pytest.mark.slow
def test_torchrun_eval_prints_one_json_equal_to_single_process(tiny_data, tmp_path):
    from fcnkit.data import SYNTHETIC_CLASSES
    from fcnkit.models import build_model
    from fcnkit.runtime.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = {"name": "fcn32s", "num_classes": len(SYNTHETIC_CLASSES), "backbone": "resnet18"}
    model = build_model(config["name"], num_classes=config["num_classes"],
                        backbone=config["backbone"])
    ckpt = save_checkpoint(tmp_path / "run" / "best.pt", {
        "model_state": model.state_dict(), "model_config": config,
        "classes": list(SYNTHETIC_CLASSES),
    })
    args = ["-m", "fcnkit", "eval", "--checkpoint", str(ckpt.parent), "--data",
            f"voc:{tiny_data}", "--json"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2"]
    proc = subprocess.run([*torchrun, *args], env=_clean_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Exactly one JSON document on stdout: rank 1 printed nothing.
    document, end = json.JSONDecoder().raw_decode(proc.stdout.strip())
    assert end == len(proc.stdout.strip())
    single = subprocess.run([sys.executable, *args], env=_clean_env(), capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    assert document == json.loads(single.stdout)
    assert document["num_images"] == 3  # 2 + 1 images on the two shards, none twice


@pytest.mark.slow
def test_elastic_restart_resumes_automatically_and_matches_a_resumed_run(tiny_data, tmp_path):
    # 2 ranks x batch 2 over 8 images: 2 steps per epoch. crash_at_step.py 1:3 kills rank 1
    # (os._exit) after step 3, in the middle of epoch 2, on torchrun's first attempt.
    import shutil

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2"]
    flags = ["train", "--data", f"voc:{tiny_data}", "--model", "fcn32s",
             "--backbone", "resnet18", "--batch-size", "2", "--lr", "0.02", "--crop", "32,32",
             "--workers", "0", "--threads", "1", "--log-every", "1", "--no-progress",
             "--epochs", "3", "--resume", "auto"]
    # torchrun's workers share the agent's store across restarts by default, and a restarted
    # group can then read the dead group's addresses (pytorch/pytorch#135712).
    elastic_env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}

    def run(out, restarts, crash_at=None):
        command = (["-m", "fcnkit"] if crash_at is None
                   else [str(Path(__file__).with_name("crash_at_step.py")), crash_at])
        return subprocess.run([*torchrun, "--max-restarts", str(restarts), *command, *flags,
                               "--out", str(out)], env=_clean_env(**elastic_env),
                              capture_output=True, text=True, timeout=600)

    # The checkpoint boundary: the same run without restarts stops after epoch 1
    # (--resume auto started it fresh: there was no last.pt yet).
    boundary = tmp_path / "boundary"
    proc = run(boundary, 0, crash_at="1:3")
    assert proc.returncode != 0 and load_checkpoint(boundary / "last.pt")["epoch"] == 1
    elastic, reference = tmp_path / "elastic", tmp_path / "reference"
    shutil.copytree(boundary, elastic)
    shutil.copytree(boundary, reference)

    # Elastic: killed again mid-epoch 2; torchrun restarts the group, --resume auto finds
    # last.pt of epoch 1 and the run finishes.
    proc = run(elastic, 1, crash_at="1:3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exitcode: 17" in proc.stderr  # the first attempt's rank 1 did die
    # Reference: resumed from the same boundary, never interrupted.
    proc = run(reference, 0)
    assert proc.returncode == 0, proc.stderr[-3000:]

    final, expected = load_checkpoint(elastic / "last.pt"), load_checkpoint(reference / "last.pt")
    assert final["epoch"] == expected["epoch"] == 3 and final["step"] == expected["step"] == 6
    for key, value in expected["model_state"].items():
        assert torch.equal(final["model_state"][key], value), key
    # The log holds each step once: the killed attempts' lines after last.pt were cut.
    records = [json.loads(x) for x in (elastic / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2, 3, 4, 5, 6]
    assert not (elastic / "error.txt").exists()  # written by the failed attempt, then removed
    assert not [p.name for p in elastic.iterdir() if p.name.startswith(".fcnkit-tmp")]


@pytest.mark.parametrize(("env", "named"), [
    ({"RANK": "zero", "WORLD_SIZE": "2"}, "RANK='zero'"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "1.5"}, "LOCAL_RANK='1.5'"),
    ({"LOCAL_WORLD_SIZE": "two"}, "LOCAL_WORLD_SIZE='two'"),
    ({"LOCAL_WORLD_SIZE": "0"}, "LOCAL_WORLD_SIZE='0'"),
    ({"WORLD_SIZE": "-3"}, "WORLD_SIZE='-3'"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 must be below WORLD_SIZE=2"),
])
def test_env_bad_torchrun_variable_is_named_in_one_line(monkeypatch, env, named):
    for key in ddp.TORCHRUN_INT_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InputError) as info:
        ddp.init_distributed("cpu")  # before any rendezvous is tried
    assert named in str(info.value) and "\n" not in str(info.value)


def test_env_int_reads_defaults_and_values(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert ddp.env_int("LOCAL_WORLD_SIZE", 1, minimum=1) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", " 4 ")
    assert ddp.env_int("LOCAL_WORLD_SIZE", 1, minimum=1) == 4


@pytest.mark.slow  # a fresh interpreter
def test_env_bad_rank_ends_train_with_exit_2(tmp_path):
    cmd = [sys.executable, "-m", "fcnkit", "train", "--data", f"voc:{tmp_path / 'none'}",
           "--epochs", "1", "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=_clean_env(RANK="first", WORLD_SIZE="2"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "RANK='first'" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("code", "want"), [(17, 17), (-9, 137), (-15, 143), (None, 1), (0, 1)])
def test_a_failed_rank_exit_code_is_the_shells(code, want):
    # multiprocessing reports a rank killed by signal N as -N; the launcher returned 1 for
    # it, where a shell says 128 + N (137 for kill -9).
    from fcnkit.runtime.distributed import failed_exit_code

    assert failed_exit_code(code) == want
