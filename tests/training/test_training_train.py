"""The training loop on a tiny synthetic dataset: run directory, resume equivalence, bad input.

The end-to-end runs are marked ``slow``; ``pytest -m "not slow"`` keeps the unit tests.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import fcnkit.training.loop as train_mod
from fcnkit.cli import build_parser
from fcnkit.cli.train import config_from_args
from fcnkit.errors import FcnkitWarning, InputError
from fcnkit.runtime.checkpoint import TrainingCheckpoint, load_checkpoint, model_from_checkpoint
from fcnkit.training.config import TrainConfig
from fcnkit.training.flags import config_to_argv
from fcnkit.training.recipe import build_scheduler, poly_factor, segmentation_loss
from fcnkit.training.runlog import ConsoleProgress, RunLog
from fcnkit.training.setup import TrainState, class_weights_for, get_dataset, model_options


@pytest.fixture(scope="module")
def tiny_data(synthetic_data):
    return synthetic_data(train=6, val=3, seed=3, size=(40, 56))  # shared: copy to modify


def tiny_config(data, out, **changes):
    base = dict(
        data=f"voc:{data}", model="fcn8s", backbone="resnet18", epochs=2, batch_size=3,
        lr=0.01, crop=(32, 32), scale_range=(0.8, 1.25), out=str(out), workers=0,
        progress=False, log_every=1, threads=1, seed=5,
    )
    base.update(changes)
    return TrainConfig(**base)


def read_val(data):
    ids = (data / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    for i in ids:
        image = np.asarray(Image.open(data / "JPEGImages" / f"{i}.jpg").convert("RGB"))
        mask = np.asarray(Image.open(data / "SegmentationClass" / f"{i}.png"))
        yield image, mask


def brute_force_confusion(model, data, num_classes):
    """Independent evaluation: ImageNet normalisation by hand, argmax, np.bincount."""
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    total = np.zeros((num_classes, num_classes), dtype=np.int64)
    model.eval()
    for image, mask in read_val(data):
        x = torch.from_numpy(((image / 255.0 - mean) / std).transpose(2, 0, 1)).float()
        with torch.no_grad():
            pred = model(x[None])[0].argmax(0).numpy()
        keep = mask != 255
        total += np.bincount(num_classes * mask[keep].astype(np.int64) + pred[keep],
                             minlength=num_classes**2).reshape(num_classes, num_classes)
    return total


@pytest.mark.slow  # end-to-end training runs (> 5 s on a shared 2-core CPU)
def test_train_writes_run_directory(tiny_data, tmp_path):
    out = tmp_path / "run"
    seen = []  # after each epoch: (inode of metrics.jsonl, its text)

    def look(record):
        seen.append(((out / "metrics.jsonl").stat().st_ino, (out / "metrics.jsonl").read_text()))

    result = train_mod.train(tiny_config(tiny_data, out), on_epoch=look)
    for name in ("config.json", "metrics.jsonl", "curves.png", "last.pt", "best.pt"):
        assert (out / name).is_file(), name
    assert TrainConfig.from_dict(json.loads((out / "config.json").read_text())) == tiny_config(
        tiny_data, out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]  # 6 images / batch 3, 2 epochs
    assert [r["epoch"] for r in epochs] == [1, 2]
    # Poly decay: lr after step s is lr0 * (1 - s/4) ** 0.9, reaching 0 at the end.
    for r in steps:
        assert r["lr"] == pytest.approx(0.01 * (1 - r["step"] / 4) ** 0.9)
    assert result["step"] == 4 and result["effective_batch_size"] == 3
    # metrics.jsonl is appended to, never rewritten: one file, each state a prefix of the next.
    assert seen[0][0] == seen[1][0] == (out / "metrics.jsonl").stat().st_ino
    assert seen[1][1].startswith(seen[0][1]) and len(seen[1][1]) > len(seen[0][1])

    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and last["step"] == 4
    assert last["model_config"] == {"name": "fcn8s", "num_classes": 9, "backbone": "resnet18"}
    # Written through the one schema: exactly TrainingCheckpoint's keys.
    schema = TrainingCheckpoint(model_state={}, model_config={}).to_payload()
    assert set(last) - {"path"} == set(schema)
    assert len(last["classes"]) == len(last["palette"]) == 9
    # The checkpoint's validation metrics equal an independent evaluation of its weights.
    model = model_from_checkpoint(last, num_classes=9, name="fcn8s")
    expected = brute_force_confusion(model, tiny_data, 9)
    assert np.array_equal(np.array(last["metrics"]["confusion"]), expected)
    assert last["metrics"]["pixel_acc"] == pytest.approx(np.trace(expected) / expected.sum())
    best = load_checkpoint(out / "best.pt")
    assert best["metrics"]["miou"] == max(r["miou"] for r in epochs)


@pytest.mark.slow  # end-to-end training runs (> 5 s on a shared 2-core CPU)
@pytest.mark.parametrize("layout", [
    {"precision": "fp32", "channels_last": "off"},
    {"precision": "bf16", "channels_last": "on"},
], ids=["fp32", "bf16-channels-last"])
def test_resume_gives_identical_weights(tiny_data, tmp_path, monkeypatch, layout):
    straight = train_mod.train(tiny_config(tiny_data, tmp_path / "a", workers=0, **layout))

    # Interrupt the second run as it enters its second epoch (after epoch 1's last.pt).
    original = train_mod.train_one_epoch

    def interrupted(state, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(state, epoch)

    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(tiny_config(tiny_data, tmp_path / "b", **layout))
    monkeypatch.setattr(train_mod, "train_one_epoch", original)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    # Scramble the global RNGs: resuming must not depend on the process's state.
    torch.manual_seed(12345)
    np.random.seed(12345)
    resumed = train_mod.train(tiny_config(tiny_data, tmp_path / "b", resume=str(tmp_path / "b"),
                                          **layout))

    a = load_checkpoint(straight["last"])
    b = load_checkpoint(resumed["last"])
    assert a["step"] == b["step"] == 4
    assert a["model_state"].keys() == b["model_state"].keys()
    # Checkpoints stay float32 whatever the compute precision.
    assert {v.dtype for v in a["model_state"].values() if v.is_floating_point()} == {
        torch.float32}
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    for pa, pb in zip(a["optimizer_state"]["state"].values(),
                      b["optimizer_state"]["state"].values()):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
    assert a["metrics"]["confusion"] == b["metrics"]["confusion"]
    # The resumed log continues the first one: steps 1..4 once each.
    records = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().split("\n")
               if x]
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2, 3, 4]


@pytest.mark.slow  # end-to-end training runs (> 5 s on a shared 2-core CPU)
def test_stop_after_is_the_start_of_the_whole_schedule_and_resumes_to_its_end(tiny_data,
                                                                              tmp_path):
    from fcnkit.training.flags import config_from_flags

    straight = train_mod.train(tiny_config(tiny_data, tmp_path / "a"))
    first = train_mod.train(tiny_config(tiny_data, tmp_path / "b", stop_after=1))
    assert first["epoch"] == 1 and first["step"] == 2
    epoch_lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text()
                   .split("\n") if x and json.loads(x)["kind"] == "epoch"]
    # Epoch 1 of the 2-epoch schedule, not a 1-epoch schedule: the same val score.
    assert first["metrics"]["miou"] == epoch_lines[0]["miou"]
    # A resume given no --stop-after runs to the schedule's end, as if never stopped.
    resumed_config = config_from_flags({"resume": str(tmp_path / "b")})
    assert resumed_config.stop_after is None
    resumed = train_mod.train(resumed_config)
    a, b = load_checkpoint(straight["last"]), load_checkpoint(resumed["last"])
    assert a["step"] == b["step"] == 4
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    with pytest.raises(InputError, match="stop_after=3 must be at most epochs=2"):
        tiny_config(tiny_data, tmp_path / "c", stop_after=3)


@pytest.mark.slow  # end-to-end training runs (> 5 s on a shared 2-core CPU)
def test_resume_bad_input(tiny_data, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        train_mod.train(tiny_config(tiny_data, tmp_path / "x", resume=str(tmp_path / "nope")))
    assert not (tmp_path / "x").exists()
    run = tmp_path / "one"
    train_mod.train(tiny_config(tiny_data, run, epochs=1, max_steps_per_epoch=1))
    before = (run / "last.pt").read_bytes()
    with pytest.warns(FcnkitWarning, match="already trained 1 of 1 epochs"):
        done = train_mod.train(tiny_config(tiny_data, run, epochs=1, max_steps_per_epoch=1,
                                           resume=str(run)))
    assert done["step"] == 1 and (run / "last.pt").read_bytes() == before  # nothing to do
    with pytest.raises(InputError, match=r"a fcn8s \(backbone resnet18\).*backbone='resnet34'"):
        train_mod.train(tiny_config(tiny_data, run, backbone="resnet34", resume=str(run)))
    with pytest.raises(InputError, match=r"name='fcn32s'"):
        train_mod.train(tiny_config(tiny_data, run, model="fcn32s", resume=str(run)))
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot be read"):
        train_mod.train(tiny_config(tiny_data, tmp_path / "corrupt",
                                    resume=str(tmp_path / "corrupt")))
    assert (tmp_path / "corrupt" / "last.pt").read_bytes() == b"garbage"


def test_class_weights(tiny_data, tmp_path):
    config = tiny_config(tiny_data, tmp_path, class_weights="auto", train_split="train")
    dataset = get_dataset(config, "train", train=True)
    weights = class_weights_for(config, dataset, 9).double().numpy()
    # Brute force median-frequency balancing over the raw PNG masks.
    ids = (tiny_data / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    pixels, image_pixels = np.zeros(9), np.zeros(9)
    for i in ids:
        mask = np.asarray(Image.open(tiny_data / "SegmentationClass" / f"{i}.png"))
        valid = mask[mask != 255]
        for c in range(9):
            n = (valid == c).sum()
            pixels[c] += n
            image_pixels[c] += valid.size if n else 0
    freq = np.divide(pixels, image_pixels, out=np.full(9, np.nan), where=image_pixels > 0)
    median = np.nanmedian(freq)
    expected = np.where(freq > 0, median / np.where(freq > 0, freq, 1), 0.0)
    # torch.nanmedian takes the lower middle value for an even count, numpy the mean.
    lower = np.sort(freq[~np.isnan(freq)])[(np.sum(~np.isnan(freq)) - 1) // 2]
    expected_lower = np.where(freq > 0, lower / np.where(freq > 0, freq, 1), 0.0)
    assert np.allclose(weights, expected, rtol=1e-5) or np.allclose(
        weights, expected_lower, rtol=1e-5)
    explicit = tiny_config(tiny_data, tmp_path, class_weights="1,2,3,4,5,6,7,8,9")
    assert class_weights_for(explicit, dataset, 9).tolist() == list(range(1, 10))
    with pytest.raises(InputError, match="class_weights '1,2' must be"):
        class_weights_for(tiny_config(tiny_data, tmp_path, class_weights="1,2"),
                                    dataset, 9)


def test_segmentation_loss_matches_torch_mean_with_and_without_weights():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 6)
    masks = torch.randint(0, 4, (2, 6, 6))
    masks[0, :3] = 255
    weight = torch.tensor([0.5, 2.0, 1.0, 0.0])
    for w in (None, weight):
        ref = torch.nn.functional.cross_entropy(logits, masks, weight=w, ignore_index=255)
        assert torch.allclose(segmentation_loss(logits, masks, w), ref, rtol=1e-6)


def test_segmentation_loss_all_ignored_is_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((2, 4, 4), 255), None)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None
    masks = torch.randint(0, 3, (2, 4, 4))
    masks[0, 0] = 255
    ref = torch.nn.CrossEntropyLoss(ignore_index=255)(logits, masks)
    assert torch.allclose(segmentation_loss(logits, masks, None), ref)


def test_poly_factor():
    assert poly_factor(0, 10, 0.9) == 1.0
    assert poly_factor(10, 10, 0.9) == 0.0
    assert poly_factor(12, 10, 0.9) == 0.0
    assert poly_factor(5, 10, 1.0) == 0.5


def test_config_validation_and_cli_round_trip(tmp_path):
    with pytest.raises(InputError, match=r"epochs=0: expected a finite integer in \[1, 100000\]"):
        TrainConfig(data="d", epochs=0)
    with pytest.raises(InputError, match="optimizer='rmsprop'"):
        TrainConfig(data="d", optimizer="rmsprop")
    with pytest.raises(InputError, match="sync_bn needs a CUDA device"):
        TrainConfig(data="d", sync_bn=True)
    with pytest.raises(InputError, match="unknown field"):
        TrainConfig.from_dict({"data": "d", "bogus": 1})
    with pytest.raises(InputError, match="precision='fp8'"):
        TrainConfig(data="d", precision="fp8")
    with pytest.raises(InputError, match="channels_last='yes'"):
        TrainConfig(data="d", channels_last="yes")
    # Runs written before "precision" replaced "amp" still load.
    assert TrainConfig.from_dict({"data": "d", "amp": True}) == TrainConfig(data="d")
    config = TrainConfig(data="voc:/x", crop=(64, 48), scale_range=(0.5, 1.5), hflip=False,
                         class_weights="auto", optimizer="adamw", lr=0.003,
                         precision="bf16", channels_last="off")
    argv = ["train", *config_to_argv(config)]
    assert config_from_args(build_parser().parse_args(argv)) == config
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(InputError, match="--data is required"):
        config_from_args(build_parser().parse_args(["train"]))


def test_model_options_follow_the_registry():
    assert model_options(TrainConfig(data="d")) == {"backbone": "resnet18"}
    # The d2l FCN has its ResNet-18 built in: the default --backbone is not passed to it.
    assert model_options(TrainConfig(data="d", model="fcn_resnet18_d2l")) == {}
    assert model_options(
        TrainConfig(data="d", model="fcn32s", upsample="deconv", backbone="vgg16")
    ) == {"backbone": "vgg16", "upsample": "deconv"}
    with pytest.raises(InputError, match="unknown model"):
        model_options(TrainConfig(data="d", model="nope"))


# --------------------------------------------------------------------------------------------
# The loop's host syncs, the run log and the console


def _toy_epoch(batches, *, log_every, lr=0.1):
    """A 1x1-conv 'model' and its optimizer/schedule, for train_one_epoch on given batches."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = build_scheduler(optimizer, len(batches), 0.9)
    config = TrainConfig(data="d", epochs=1, log_every=log_every, lr=lr)
    return model, optimizer, scheduler, config


def _toy_state(model, optimizer, scheduler, config, batches):
    """The loop's state for one process in fp32 that logs in memory."""
    return TrainState(config=config, model=model, optimizer=optimizer, scheduler=scheduler,
                      train_loader=batches, steps_per_epoch=len(batches),
                      device=torch.device("cpu"))


def _batches(n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(2, 3, 8, 8, generator=gen), torch.randint(0, 4, (2, 8, 8), generator=gen))
            for _ in range(n)]


HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "numpy")


def test_loss_is_read_back_once_per_log_window(monkeypatch):
    batches = _batches(6)
    model, optimizer, scheduler, config = _toy_epoch(batches, log_every=4)
    # Oracle: the same steps by hand, torch's own mean cross-entropy per batch.
    reference = torch.nn.Conv2d(3, 4, 1)
    reference.load_state_dict(model.state_dict())
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    ref_sched = build_scheduler(ref_opt, 6, 0.9)
    losses = []
    for images, masks in batches:
        loss = torch.nn.functional.cross_entropy(reference(images), masks, ignore_index=255)
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
        ref_sched.step()
        losses.append(loss.item())

    reads = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    state = _toy_state(model, optimizer, scheduler, config, batches)
    mean_loss = train_mod.train_one_epoch(state, 0)
    monkeypatch.undo()
    step, log = state.step, state.log

    # Windows end at step 4 (log_every) and step 6 (the epoch's end): two reads in all.
    assert reads == ["tolist", "tolist"]
    assert step == 6 and [r["step"] for r in log.records] == [4, 6]
    assert log.records[0]["loss"] == pytest.approx(np.mean(losses[:4]), rel=1e-6)
    assert log.records[1]["loss"] == pytest.approx(np.mean(losses[4:]), rel=1e-6)
    assert mean_loss == pytest.approx(np.mean(losses), rel=1e-6)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p, q)


def test_non_finite_loss_stops_at_the_window_end():
    batches = _batches(4)
    batches[1] = (torch.full_like(batches[1][0], math.nan), batches[1][1])
    model, optimizer, scheduler, config = _toy_epoch(batches, log_every=2)
    state = _toy_state(model, optimizer, scheduler, config, batches)
    with pytest.raises(InputError, match=r"loss became nan at step 2; likely cause: the data"):
        train_mod.train_one_epoch(state, 0)
    assert state.log.records == []


def test_run_log_appends_and_cuts_once_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"kind": "step", "step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 6)]
    path.write_text("".join(lines) + '{"kind": "step", "st')  # last line torn by a crash
    inode = path.stat().st_ino
    with RunLog.open(path, keep_up_to_step=3) as log:
        assert path.read_text() == "".join(lines[:3])  # cut in place, once
        assert [r["step"] for r in log.records] == [1, 2, 3]
        log.append({"kind": "step", "step": 4, "loss": 0.5})
        # On disk at once (flushed), after the kept prefix, in the same file.
        assert path.read_text() == "".join(lines[:3]) + '{"kind": "step", "step": 4, "loss": 0.5}\n'
        assert path.stat().st_ino == inode
    with RunLog.open(path, keep_up_to_step=0) as fresh:  # a fresh run keeps nothing
        assert fresh.records == [] and path.read_text() == ""
    with RunLog.open(tmp_path / "new.jsonl", keep_up_to_step=0) as new:
        new.append({"kind": "epoch", "step": 1, "miou": math.nan})
    assert json.loads((tmp_path / "new.jsonl").read_text())["step"] == 1



def test_run_log_on_resume_drops_a_bad_middle_line_and_keeps_the_good_ones(tmp_path):
    """A corrupt line in the middle is dropped (and counted), as the readers skip it; the
    good lines after it up to the checkpoint's step stay (before: cut at the bad line)."""
    path = tmp_path / "metrics.jsonl"
    good = [json.dumps({"kind": "step", "step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3, 4)]
    path.write_bytes("".join(good[:2]).encode() + b"[1, 2]\n" + "".join(good[2:]).encode()
                     + b'{"kind": "st')
    with pytest.warns(FcnkitWarning, match="1 unreadable line"):
        log = RunLog.open(path, keep_up_to_step=3)
    with log:
        assert [r["step"] for r in log.records] == [1, 2, 3]
        assert path.read_text() == "".join(good[:3])

def _drive(console):
    console.line("banner")
    console.start_epoch(1, 2, 3)
    for _ in range(3):
        console.advance()
    console.log_window({"loss": 0.25, "lr": 0.01, "img_per_s": 3.0}, 3)
    console.end_epoch()


def test_console_bar_on_a_tty_plain_lines_off_it():
    tty, plain, quiet = io.StringIO(), io.StringIO(), io.StringIO()
    _drive(ConsoleProgress(stream=tty, tty=True))
    _drive(ConsoleProgress(stream=plain, tty=False))
    _drive(ConsoleProgress(stream=quiet, enabled=False))
    assert "\r" in tty.getvalue() and "epoch 1/2" in tty.getvalue()  # tqdm's frames
    assert "\r" not in plain.getvalue()
    assert plain.getvalue().splitlines() == [
        "banner", "epoch 1/2 step 3/3: loss 0.2500, lr 0.01, 3.0 img/s"]
    assert quiet.getvalue() == ""
    assert ConsoleProgress(stream=io.StringIO()).tty is False  # detected: not a terminal


@pytest.mark.slow  # end-to-end training runs (> 5 s on a shared 2-core CPU)
def test_training_off_a_tty_writes_no_carriage_returns(tiny_data, tmp_path, capsys):
    train_mod.train(tiny_config(tiny_data, tmp_path / "r", epochs=1, max_steps_per_epoch=2,
                                progress=True))
    err = capsys.readouterr().err  # capsys is not a terminal
    assert "\r" not in err
    assert "epoch 1/1 step 1/2: loss" in err and "epoch 1/1 step 2/2: loss" in err
    assert "epoch 1/1: train loss" in err
    # The banner says what the allocator does (glibc keeps freed memory for the next step).
    assert ("; freed memory kept (glibc); run dir" in err
            or "; system allocator (" in err)


def test_an_unknown_fcnkit_malloc_stops_training_before_it_starts(tiny_data, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("FCNKIT_MALLOC", "tcmalloc")
    with pytest.raises(InputError, match="FCNKIT_MALLOC='tcmalloc' is unknown"):
        train_mod.train(tiny_config(tiny_data, tmp_path / "r", epochs=1,
                                    max_steps_per_epoch=1))
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------------------------
# Devices


def test_device_cuda_index(tiny_data, tmp_path, capsys):
    assert TrainConfig(data="d", device="cuda:1").device == "cuda:1"
    assert TrainConfig(data="d", device="cuda").device == "cuda"
    for bad in ("gpu", "cuda:", "cuda:x", "cuda1"):
        with pytest.raises(InputError, match="must be cpu, cuda or cuda:N"):
            TrainConfig(data="d", device=bad)
    parser = build_parser()
    assert parser.parse_args(["train", "--device", "cpu"]).device == "cpu"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--device", "gpu0"])
    assert "not a device" in capsys.readouterr().err
    if torch.cuda.is_available():
        assert parser.parse_args(["train", "--device", "cuda:0"]).device == "cuda:0"
        return
    # No GPU here: the CLI refuses cuda:N while parsing, the library before writing anything.
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--device", "cuda:0"])
    assert "CUDA" in capsys.readouterr().err
    with pytest.raises(InputError, match="CUDA"):
        train_mod.train(tiny_config(tiny_data, tmp_path / "gpu", device="cuda:0"))
    assert not (tmp_path / "gpu").exists()
