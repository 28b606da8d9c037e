"""`fcnkit eval` / `fcnkit predict` end to end on a tiny folder dataset and an untrained FCN."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from sklearn.metrics import confusion_matrix, jaccard_score

from fcnkit.cli import main
from fcnkit.models import build_model
from fcnkit.runtime.checkpoint import save_checkpoint

CLASSES = ["background", "disc", "bar"]
PALETTE = [(0, 0, 0), (220, 20, 60), (0, 128, 255)]
SIZES = [(48, 64), (40, 56), (52, 44)]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _model(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("fcn8s", num_classes=num_classes, backbone="resnet18").eval()


@pytest.fixture(scope="module")
def oracle_model() -> torch.nn.Module:
    """The untrained network the 3-class checkpoint holds (same seed, same weights)."""
    return _model()


def write_checkpoint(path: Path, num_classes: int = 3) -> Path:
    model = _model(num_classes)
    save_checkpoint(path, {
        "model_state": model.state_dict(),
        "model_config": {"name": "fcn8s", "num_classes": num_classes, "backbone": "resnet18"},
        "classes": (CLASSES + [f"extra{i}" for i in range(num_classes)])[:num_classes],
        "palette": [list(c) for c in (PALETTE + [(9, 9, 9)] * num_classes)[:num_classes]],
    })
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A folder dataset (val split, 3 images), a 3-class and a 5-class checkpoint."""
    root = tmp_path_factory.mktemp("eval_predict")
    data = root / "data"
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = rng.integers(0, 3, (h, w), dtype=np.uint8)
        mask[rng.random((h, w)) < 0.1] = 255
        (data / "images" / "val").mkdir(parents=True, exist_ok=True)
        (data / "masks" / "val").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(data / "images" / "val" / f"img{i}.png")
        Image.fromarray(mask, "L").save(data / "masks" / "val" / f"img{i}.png")
    (data / "classes.txt").write_text(
        "".join(f"{n} {r} {g} {b}\n" for n, (r, g, b) in zip(CLASSES, PALETTE))
    )
    return {
        "root": root,
        "data": data,
        "images": data / "images" / "val",
        "ckpt": write_checkpoint(root / "run" / "best.pt"),
        "ckpt5": write_checkpoint(root / "other" / "best.pt", num_classes=5),
    }


def direct_labels(model: torch.nn.Module, path: Path) -> np.ndarray:
    """Oracle: PIL → ImageNet normalisation (torchvision) → model → argmax."""
    rgb = np.asarray(Image.open(path).convert("RGB"))
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0
    with torch.no_grad():
        return model(TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)[None])[0].argmax(0).numpy()


#: The oracle runs in float32; --precision auto is bf16 autocast on a CPU with
#: AVX512-BF16/AMX, where this untrained model's near-tied logits flip some labels.
FP32 = ["--precision", "fp32"]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])  # never raises SystemExit, argparse errors included
    out, err = capsys.readouterr()
    return code, out, err


# --- eval -------------------------------------------------------------------------------


@pytest.mark.slow  # evaluation and its oracle: seconds
def test_eval_json_equals_independent_computation(world, oracle_model, capsys) -> None:
    code, out, err = run_cli(
        ["eval", "--checkpoint", world["ckpt"], "--data", world["data"], "--json",
         "--batch-size", "1", *FP32], capsys)
    assert code == 0, err
    result = json.loads(out)
    model = oracle_model
    trues, preds = [], []
    for i in range(len(SIZES)):
        mask = np.asarray(Image.open(world["data"] / "masks" / "val" / f"img{i}.png"))
        pred = direct_labels(model, world["images"] / f"img{i}.png")
        keep = mask != 255
        trues.append(mask[keep])
        preds.append(pred[keep])
    y_true, y_pred = np.concatenate(trues), np.concatenate(preds)
    matrix = confusion_matrix(y_true, y_pred, labels=[0, 1, 2])
    present = sorted(set(y_true) | set(y_pred))
    assert result["num_images"] == len(SIZES)
    assert result["pixels"] == matrix.sum(axis=1).tolist()
    assert result["pixel_acc"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert result["miou"] == pytest.approx(
        jaccard_score(y_true, y_pred, labels=present, average="macro")
    )
    assert set(result) >= {"pixel_acc", "mean_acc", "miou", "fwiou", "iou", "num_images"}


@pytest.mark.slow  # several evaluations: seconds
def test_eval_table_and_sliding_window(world, capsys) -> None:
    code, out, err = run_cli(
        ["eval", "--checkpoint", world["ckpt"].parent, "--data", f"folder:{world['data']}",
         "--window", "40,48", "--overlap", "0.25"], capsys)
    assert code == 0, err
    for name in CLASSES + ["pixel accuracy", "mean IoU", "frequency-weighted IoU"]:
        assert name in out
    assert "sliding window 40x48" in out and "3 images" in out


# --- predict ------------------------------------------------------------------------------


def test_predict_writes_masks_and_overlays(world, oracle_model, capsys, tmp_path) -> None:
    out_dir = tmp_path / "preds"
    code, out, err = run_cli(
        ["predict", "--checkpoint", world["ckpt"], world["images"], "--out", out_dir,
         "--overlay", "--json", *FP32], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["num_images"] == len(SIZES) and report["skipped"] == []
    model = oracle_model
    for i, (h, w) in enumerate(SIZES):
        with Image.open(out_dir / f"img{i}.png") as im:
            assert im.mode == "P" and im.size == (w, h)
            assert im.getpalette()[:9] == [v for c in PALETTE for v in c]
            labels = np.asarray(im)
        np.testing.assert_array_equal(labels, direct_labels(model, world["images"] / f"img{i}.png"))
        with Image.open(out_dir / f"img{i}_overlay.jpg") as im:
            assert im.format == "JPEG" and im.size == (w, h)


@pytest.mark.slow  # seconds of prediction
def test_predict_table_output(world, capsys, tmp_path) -> None:
    code, out, err = run_cli(
        ["predict", "--checkpoint", world["ckpt"], world["images"] / "img0.png",
         "--out", tmp_path / "p"], capsys)
    assert code == 0, err
    assert "img0.png" in out and "48x64" in out and "1 images segmented" in out
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["img0.png"]


# --- bad input: one stderr line naming the file, exit 2, nothing half written --------------


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_and_corrupt_checkpoint(world, capsys, tmp_path) -> None:
    missing = tmp_path / "nope.pt"
    code, _, err = run_cli(["eval", "--checkpoint", missing, "--data", world["data"]], capsys)
    assert_one_line_error(code, err, "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(world["ckpt"].read_bytes()[:2000])
    code, _, err = run_cli(
        ["predict", "--checkpoint", corrupt, world["images"], "--out", tmp_path / "o"], capsys)
    assert_one_line_error(code, err, "corrupt.pt")
    assert not (tmp_path / "o").exists()


def test_eval_checkpoint_for_another_class_count(world, capsys) -> None:
    code, _, err = run_cli(["eval", "--checkpoint", world["ckpt5"], "--data", world["data"]],
                           capsys)
    assert_one_line_error(code, err, str(world["ckpt5"]), "5 classes", "3 classes")


def test_eval_missing_data_and_corrupt_sample(world, capsys, tmp_path) -> None:
    code, _, err = run_cli(
        ["eval", "--checkpoint", world["ckpt"], "--data", tmp_path / "no_such_data"], capsys)
    assert_one_line_error(code, err, "no_such_data")

    data = tmp_path / "data"
    shutil.copytree(world["data"], data)
    bad = data / "images" / "val" / "img1.png"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated PNG
    code, _, err = run_cli(["eval", "--checkpoint", world["ckpt"], "--data", data], capsys)
    assert_one_line_error(code, err, "img1.png")

    code, out, err = run_cli(
        ["eval", "--checkpoint", world["ckpt"], "--data", data, "--skip-bad", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["num_images"] == len(SIZES) - 1 and result["skipped"] == 1
    assert "img1" in err  # the warning names the skipped sample


def test_predict_corrupt_image_and_skip_bad(world, capsys, tmp_path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "c.png"):
        (inputs / name).write_bytes((world["images"] / "img1.png").read_bytes())
    (inputs / "b.png").write_bytes((world["images"] / "img0.png").read_bytes()[:300])
    code, _, err = run_cli(
        ["predict", "--checkpoint", world["ckpt"], inputs / "b.png", "--out", tmp_path / "o1"],
        capsys)
    assert_one_line_error(code, err, "b.png")
    assert not (tmp_path / "o1").exists()  # nothing written, not even the directory

    code, out, err = run_cli(
        ["predict", "--checkpoint", world["ckpt"], inputs, "--out", tmp_path / "o2",
         "--skip-bad"], capsys)
    assert code == 0
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and "b.png" in warnings[0] and "1 unreadable" in warnings[1]
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["a.png", "c.png"]


def test_predict_empty_directory_and_out_is_a_file(world, capsys, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(
        ["predict", "--checkpoint", world["ckpt"], empty, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(code, err, "empty", "no images")
    out_file = tmp_path / "taken"
    out_file.write_text("keep me")
    code, _, err = run_cli(
        ["predict", "--checkpoint", world["ckpt"], world["images"], "--out", out_file], capsys)
    assert_one_line_error(code, err, "taken", "is a file")
    assert out_file.read_text() == "keep me"


@pytest.mark.parametrize(
    "extra,needle",
    [(["--overlap", "1.5"], "overlap"), (["--window", "0"], "window"),
     (["--device", "toaster"], "--device")],
)
def test_eval_bad_options(world, capsys, extra, needle) -> None:
    code, _, err = run_cli(
        ["eval", "--checkpoint", world["ckpt"], "--data", world["data"], *extra], capsys)
    assert_one_line_error(code, err, needle)


def test_eval_with_an_unknown_allocator_setting(world, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FCNKIT_MALLOC", "jemalloc")
    code, _, err = run_cli(["eval", "--checkpoint", world["ckpt"], "--data", world["data"]],
                           capsys)
    assert_one_line_error(code, err, "FCNKIT_MALLOC='jemalloc'", "keep or system")


@pytest.mark.slow  # a fresh process of the installed script (imports torch)
def test_console_script_exit_code(world, tmp_path) -> None:
    """The installed `fcnkit` entry point: real process, exit 2, one stderr line."""
    exe = Path(sys.executable).with_name("fcnkit")
    proc = subprocess.run(
        [str(exe), "predict", "--checkpoint", str(tmp_path / "missing.pt"),
         str(world["images"]), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env={**os.environ, "FCNKIT_DEBUG": ""}, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "missing.pt" in proc.stderr


@pytest.mark.slow  # seconds of evaluation
def test_eval_reports_boundary_metrics_of_the_oracle_predictions(world, oracle_model,
                                                                 capsys) -> None:
    from fcnkit.metrics import BoundaryMetrics

    code, out, err = run_cli(
        ["eval", "--checkpoint", world["ckpt"], "--data", world["data"], "--json",
         "--boundary-width", "2", *FP32], capsys)
    assert code == 0, err
    expected = BoundaryMetrics(3, width=2)
    for i in range(len(SIZES)):
        mask = np.asarray(Image.open(world["data"] / "masks" / "val" / f"img{i}.png"))
        expected.update(direct_labels(oracle_model, world["images"] / f"img{i}.png"),
                        mask.astype(np.int64))
    want = expected.compute()
    got = json.loads(out)["boundary"]
    assert got["width"] == 2
    for key in ("trimap_pixel_acc", "trimap_miou", "boundary_iou"):
        assert got[key] == pytest.approx(want[key])
    code, out, err = run_cli(
        ["eval", "--checkpoint", world["ckpt"], "--data", world["data"]], capsys)
    assert code == 0 and "Boundary IoU (d=3)" in out
    code, out, err = run_cli(["eval", "--checkpoint", world["ckpt"], "--data", world["data"],
                              "--boundary-width", "0", "--json"], capsys)
    assert code == 0 and "boundary" not in json.loads(out)


# --- hostile environment: FIFOs, encodings, signals, huge widths ---------------------------


def _fcnkit(*args: object, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("fcnkit")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "FCNKIT_DEBUG": "", **env}, timeout=timeout)


@pytest.mark.slow  # a fresh interpreter per case
@pytest.mark.parametrize("name", ["model.pt", "model.onnx"])
def test_a_fifo_checkpoint_is_refused_not_waited_for(world, tmp_path, name) -> None:
    fifo = tmp_path / name
    os.mkfifo(fifo)
    proc = _fcnkit("predict", "--checkpoint", fifo, world["images"], "--out", tmp_path / "o",
                   timeout=60)  # before: blocked in open() until killed
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "is a FIFO (named pipe)" in proc.stderr


@pytest.mark.slow  # a fresh interpreter
def test_predict_output_is_printable_under_an_ascii_encoding(world, tmp_path) -> None:
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(world["images"] / "img0.png", images / "vélo-北.png")
    proc = _fcnkit("predict", "--checkpoint", world["ckpt"], images, "--out", tmp_path / "o",
                   PYTHONIOENCODING="ascii")
    assert proc.returncode == 0, proc.stderr
    assert "v\\xe9lo-\\u5317.png" in proc.stdout and "UnicodeEncodeError" not in proc.stderr
    assert (tmp_path / "o" / "vélo-北.png").is_file()


@pytest.mark.slow  # a child per signal: seconds each
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_predict_exits_non_zero_and_marks_its_output(world, tmp_path, signum,
                                                                  code) -> None:
    from fcnkit.atomic import is_incomplete

    images = tmp_path / "in"
    images.mkdir()
    picture = Image.open(world["images"] / "img0.png").resize((320, 320))
    for i in range(40):
        picture.save(images / f"p{i:02d}.png")
    out = tmp_path / "o"
    exe = Path(sys.executable).with_name("fcnkit")
    proc = subprocess.Popen([str(exe), "predict", "--checkpoint", str(world["ckpt"]),
                             str(images), "--out", str(out), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(p.suffix == ".png" for p in out.iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "predict ended before it was interrupted"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip() in ("fcnkit: interrupted", "fcnkit: terminated")
    assert is_incomplete(out) and len(list(out.glob("*.png"))) < 40
    rerun = _fcnkit("predict", "--checkpoint", world["ckpt"], images / "p00.png", images /
                    "p01.png", "--out", out)
    assert rerun.returncode == 0 and not is_incomplete(out)


@pytest.mark.slow  # seconds of evaluation
def test_boundary_width_beyond_the_images_is_bounded(world, capsys) -> None:
    start = time.perf_counter()
    code, out, err = run_cli(["eval", "--checkpoint", world["ckpt"], "--data", world["data"],
                              "--boundary-width", "1024", "--json", *FP32], capsys)
    assert code == 0, err
    assert time.perf_counter() - start < 60  # before: a 2049-wide window per pixel, minutes
    assert "boundary width 1024 is wider than the" in err
    wide = json.loads(out)["boundary"]
    code, out, _ = run_cli(["eval", "--checkpoint", world["ckpt"], "--data", world["data"],
                            "--boundary-width", "64", "--json", *FP32], capsys)
    # every image has a side <= 64: a band of 64 already is the whole image
    assert json.loads(out)["boundary"] == {**wide, "width": 64}


def _subcommands() -> dict:
    import argparse

    from fcnkit.cli import build_parser

    parser = build_parser()
    (choices,) = [a.choices for a in parser._actions
                  if isinstance(a, argparse._SubParsersAction)]
    return choices


def test_every_option_of_a_training_setting_takes_its_range_from_ranges() -> None:
    import argparse

    from fcnkit.training.config import RANGES

    checked = 0
    for name, command in _subcommands().items():
        for action in command._actions:
            dest = action.dest
            if dest not in ("seed", "workers", "threads", "batch_size") or action.type is None:
                continue
            span = RANGES[dest]
            low, high = int(span.low), int(span.high)
            assert action.type(str(low)) == low and action.type(str(high)) == high, name
            for outside in (low - 1, high + 1):
                with pytest.raises(argparse.ArgumentTypeError):
                    action.type(str(outside))
            checked += 1
    # seed: train, demo, data synth; workers: train, demo, eval, data synth; threads: train,
    # demo, eval, predict; batch size: train, eval.
    assert checked >= 12


def test_eval_and_predict_share_one_inference_argument_group() -> None:
    commands = _subcommands()

    def options(name: str) -> dict:
        return {a.dest: (getattr(a.type, "__qualname__", None), a.default, a.required,
                         tuple(a.choices or ()), a.option_strings)
                for a in commands[name]._actions}

    shared = {"checkpoint", "window", "overlap", "max_pixels", "device", "skip_bad",
              "backend", "precision", "channels_last", "threads", "json"}
    evaluated, predicted = options("eval"), options("predict")
    for dest in shared:
        assert evaluated[dest] == predicted[dest], dest
