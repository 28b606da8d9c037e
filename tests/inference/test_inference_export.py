"""ONNX export with dynamic sizes, the onnxruntime backend and int8, against torch eager.

The oracle is the eager PyTorch model: the exported graph, traced once at 64×96, must give
the same logits (max abs difference <= 1e-4) at sizes it was not traced at.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnkit.errors import InputError
from fcnkit.inference.backends import OnnxRuntimeBackend, TorchBackend, open_backend
from fcnkit.inference.export import (
    export_checkpoint,
    onnx_metadata,
    quantize_int8,
    read_onnx_metadata,
    require,
)
from fcnkit.inference.predict import predict_image
from fcnkit.models import build_model
from fcnkit.models.heads import crop_to, fuse
from fcnkit.runtime.checkpoint import save_checkpoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

CLASSES = ["background", "disc", "bar"]
PALETTE = [[0, 0, 0], [220, 20, 60], [0, 128, 255]]
# Non-multiples of 32, 1×1, and sizes larger than the 64×96 trace.
SIZES = [(64, 96), (75, 50), (1, 1), (33, 65), (130, 161)]


def _checkpoint(name: str = "fcn8s", **options) -> dict:
    torch.manual_seed(0)
    model = build_model(name, num_classes=3, **options).eval()
    return {
        "format": "fcnkit-checkpoint/1",
        "model_state": model.state_dict(),
        "model_config": {"name": name, "num_classes": 3, **options},
        "classes": CLASSES,
        "palette": PALETTE,
    }


# --- fast: the head functions under torch.export with symbolic sizes ------------------------


class _HalfAndBack(torch.nn.Module):
    """A map and its ×2-upsampled half (``2*ceil(h/2)`` rows), fused and cropped like FCN."""

    def __init__(self, offset):
        super().__init__()
        self.offset = offset

    def forward(self, x):
        up = x[..., ::2, ::2].repeat_interleave(2, -1).repeat_interleave(2, -2)
        return fuse(x, up, self.offset), crop_to(up, (0, 0), x.shape[-2:])


def _brute_fuse(a, b, offset):
    """Oracle: pixel by pixel, a[y, x] + b[y - offset_y, x - offset_x] where both exist."""
    rows = [y for y in range(a.shape[-2]) if 0 <= y - offset[0] < b.shape[-2]]
    cols = [x for x in range(a.shape[-1]) if 0 <= x - offset[1] < b.shape[-1]]
    return torch.stack([torch.stack(
        [a[..., y, x] + b[..., y - offset[0], x - offset[1]] for x in cols], -1) for y in rows], -2)


@pytest.mark.parametrize("offset", [(0, 0), pytest.param((1, -1), marks=pytest.mark.slow),
                                    pytest.param((-2, 3), marks=pytest.mark.slow)])  # seconds each
def test_fuse_and_crop_exported_with_symbolic_sizes_are_right_at_other_sizes(offset) -> None:
    # Capture as torch.onnx.export(dynamo=True) does (torch/onnx/_internal/exporter/
    # _capture_strategies.py): size-oblivious, checks deferred to run time. A size compared
    # in Python is frozen here: traced at 10x12, where 2*ceil(h/2) == h, an `if` that skips
    # the crop would answer 9x11 with 10x12 (the 375x500 -> 376x504 bug).
    dims = ({2: torch.export.Dim("h"), 3: torch.export.Dim("w")},)
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        program = torch.export.export(_HalfAndBack(offset), (torch.randn(1, 2, 10, 12),),
                                      dynamic_shapes=dims,
                                      prefer_deferred_runtime_asserts_over_guards=True)
    for h, w in [(10, 12), (9, 11), (4, 5), (21, 7), (6, 6)]:
        x = torch.randn(1, 2, h, w)
        fused, cropped = program.module()(x)
        up = x[..., ::2, ::2].repeat_interleave(2, -1).repeat_interleave(2, -2)
        assert torch.equal(fused, _brute_fuse(x, up, offset))
        assert torch.equal(cropped, up[..., :h, :w])


def test_crop_and_fuse_refuse_windows_outside_the_map() -> None:
    with pytest.raises(RuntimeError, match="cannot crop"):
        crop_to(torch.zeros(1, 1, 5, 5), (1, 0), (5, 5))
    with pytest.raises(RuntimeError, match="do not overlap"):
        fuse(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), (4, 0))


# --- fast: errors ---------------------------------------------------------------------------


def test_export_errors_are_one_line_input_errors(tmp_path: Path) -> None:
    ckpt = _checkpoint()
    with pytest.raises(InputError, match="--format 'tflite'"):
        export_checkpoint(ckpt, tmp_path / "m.tflite", format="tflite")
    with pytest.raises(InputError, match="--calibrate"):
        export_checkpoint(ckpt, tmp_path / "m.onnx", quantize="int8")
    with pytest.raises(InputError, match="is a directory"):
        export_checkpoint(ckpt, tmp_path)
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a protobuf at all \x00\xff")
    with pytest.raises(InputError, match="bogus.onnx"):
        read_onnx_metadata(bogus)
    with pytest.raises(InputError, match="--backend onnxruntime"):
        open_backend(bogus, backend="torch")
    # The default ("auto") sends an .onnx file to onnxruntime, which reads (and refuses) it.
    with pytest.raises(InputError, match="bogus.onnx") as refused:
        open_backend(bogus)
    assert "--backend" not in str(refused.value)
    with pytest.raises(InputError, match=r"pip install 'fcnkit\[onnx\]'"):
        require("fcnkit_no_such_module")
    assert not list(tmp_path.glob("*.onnx*"))[1:]  # nothing but the bogus file


def test_torch_backend_returns_float32_logits_in_any_layout() -> None:
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=3, backbone="resnet18").eval()
    x = torch.randn(1, 3, 40, 52)
    with torch.no_grad():
        want = model(x)
        nhwc = TorchBackend(model, channels_last=True)(x)
        bf16 = TorchBackend(model, precision="bf16")(x)
    assert nhwc.dtype == bf16.dtype == torch.float32
    assert nhwc.is_contiguous() and nhwc.shape == want.shape
    torch.testing.assert_close(nhwc, want, rtol=1e-4, atol=1e-4)
    # bf16 has an 8-bit mantissa: logits agree to a few percent of their range.
    assert (bf16 - want).abs().max() < 0.05 * want.abs().max() + 0.05


# --- slow: a real export ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("export")
    ckpt = _checkpoint(backbone="resnet18")
    save_checkpoint(root / "run" / "best.pt", ckpt)
    out = root / "model.onnx"
    report = export_checkpoint(root / "run", out, dynamic=True)
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=3, backbone="resnet18").eval()
    model.load_state_dict(ckpt["model_state"])
    return {"root": root, "path": out, "report": report, "model": model, "ckpt": ckpt}


@pytest.mark.slow
def test_dynamic_onnx_matches_torch_at_every_size(exported) -> None:
    session = ort.InferenceSession(str(exported["path"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    rng = np.random.default_rng(0)
    for batch, (h, w) in zip([2, 1, 3, 1, 1], SIZES):
        x = rng.standard_normal((batch, 3, h, w)).astype(np.float32)
        (got,) = session.run(None, {"image": x})
        with torch.no_grad():
            want = exported["model"](torch.from_numpy(x)).numpy()
        assert got.shape == want.shape == (batch, 3, h, w)
        assert np.abs(got - want).max() <= 1e-4, (h, w)


@pytest.mark.slow
def test_export_writes_checked_model_with_preprocessing_metadata(exported) -> None:
    path = exported["path"]
    assert exported["report"]["output"] == str(path)
    assert exported["report"]["bytes"] == path.stat().st_size
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    meta = read_onnx_metadata(path)
    assert meta["classes"] == CLASSES and meta["palette"] == PALETTE
    assert meta["model_config"] == {"name": "fcn8s", "num_classes": 3, "backbone": "resnet18"}
    # The normalisation the training transforms apply (torchvision's ImageNet statistics).
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["std"] == pytest.approx([0.229, 0.224, 0.225])
    raw = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert raw == onnx_metadata(exported["ckpt"])
    assert not [p for p in path.parent.iterdir() if ".tmp" in p.name]


@pytest.mark.slow
def test_onnxruntime_backend_gives_the_torch_labels(exported) -> None:
    opened = open_backend(exported["path"], backend="onnxruntime", num_classes=3)
    assert isinstance(opened.backend, OnnxRuntimeBackend)
    assert (opened.num_classes, opened.classes, opened.palette) == (3, CLASSES, PALETTE)
    x = torch.randn(2, 3, 45, 70)
    with torch.no_grad():
        want = exported["model"](x)
    got = opened.backend(x)
    assert got.dtype == torch.float32 and (got - want).abs().max() <= 1e-4
    top2 = want.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 1e-3  # labels compared where no near-tie exists
    assert torch.equal(got.argmax(1)[decided], want.argmax(1)[decided])
    with pytest.raises(InputError, match="predicts 3 classes"):
        open_backend(exported["path"], backend="onnxruntime", num_classes=5)


# pytorch-fcn's input (torchfcn/datasets/voc.py): BGR, 0..255, minus this mean (B, G, R).
TORCHFCN_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)


@pytest.mark.slow
def test_onnx_records_and_applies_the_checkpoints_caffe_preprocessing(tmp_path: Path) -> None:
    # A checkpoint that records the Caffe preprocessing pytorch-fcn weights come with.
    ckpt = _checkpoint(backbone="resnet18", preprocessing="caffe")
    out = tmp_path / "caffe.onnx"
    export_checkpoint(ckpt, out, dynamic=True)
    meta = read_onnx_metadata(out)
    assert meta["preprocessing"]["channel_order"] == "BGR"
    assert meta["preprocessing"]["scale"] == 255.0
    assert meta["mean"] == pytest.approx(TORCHFCN_MEAN_BGR)
    assert meta["std"] == pytest.approx([1.0, 1.0, 1.0])
    assert "BGR" in meta["input"] and "255" in meta["input"]
    model = build_model("fcn8s", num_classes=3, backbone="resnet18").eval()
    model.load_state_dict(ckpt["model_state"])
    rng = np.random.default_rng(2)
    images = [torch.from_numpy(rng.random((3, h, w), dtype=np.float32))
              for h, w in [(45, 70), (33, 65)]]
    opened = open_backend(out, backend="onnxruntime", num_classes=3)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    order = [2, 1, 0] if meta["preprocessing"]["channel_order"] == "BGR" else [0, 1, 2]
    for image in images:
        # Oracle: the torch model on the input prepared as torchfcn prepares it.
        bgr = image.flip(0) * 255.0 - torch.tensor(TORCHFCN_MEAN_BGR).view(3, 1, 1)
        with torch.no_grad():
            want = model(bgr[None])
        top2 = want.topk(2, dim=1).values
        decided = ((top2[:, 0] - top2[:, 1]) > 1e-3)[0]
        torch_labels = want.argmax(1)[0]
        # fcnkit's onnxruntime path normalises with what the file's metadata says.
        got = predict_image(opened.backend, image, num_classes=3)
        assert torch.equal(got.long()[decided], torch_labels[decided])
        # So does any runtime that follows the metadata alone.
        pre = meta["preprocessing"]
        x = image.numpy()[order] * pre["scale"]
        x = (x - np.array(meta["mean"]).reshape(3, 1, 1)) / np.array(meta["std"]).reshape(3, 1, 1)
        (logits,) = session.run(None, {"image": x[None].astype(np.float32)})
        assert torch.equal(torch.from_numpy(logits).argmax(1)[0][decided], torch_labels[decided])
        assert decided.float().mean() > 0.9


@pytest.mark.slow
def test_int8_export_is_quantized_dynamic_and_close(exported, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    calibration = [torch.from_numpy(rng.standard_normal((1, 3, 48, 64)).astype(np.float32))
                   for _ in range(4)]
    out = quantize_int8(exported["path"], tmp_path / "int8.onnx", calibration)
    graph = onnx.load(str(out))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = read_onnx_metadata(out)
    assert meta["classes"] == CLASSES and meta["quantization"]["type"] == "int8"
    assert out.stat().st_size < 0.4 * exported["path"].stat().st_size  # int8 weights
    backend = OnnxRuntimeBackend(out)
    for h, w in [(48, 64), (37, 90)]:
        x = torch.from_numpy(rng.standard_normal((1, 3, h, w)).astype(np.float32))
        with torch.no_grad():
            want = exported["model"](x)
        got = backend(x)
        assert got.shape == want.shape
        # 8-bit activations: errors of a few percent of the logit range, not garbage.
        assert (got - want).abs().mean() < 0.05 * want.abs().max()


@pytest.mark.slow
def test_cli_export_and_predict_with_onnxruntime(exported, tmp_path: Path, capsys) -> None:
    from fcnkit.cli import main

    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)).save(image)
    out = tmp_path / "m.onnx"
    ckpt = exported["root"] / "run" / "best.pt"
    assert main(["export", str(ckpt), "--format", "onnx", "--dynamic", "-o", str(out),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["output"] == str(out) and report["dynamic"] is True
    # Both in float32: --precision auto is bf16 autocast on a CPU with AVX512-BF16/AMX,
    # and this untrained model's near-tied logits would then differ in ~1% of the labels.
    # "auto" (the default) runs the .onnx file on onnxruntime.
    for backend, source, dest in [("auto", out, "ort"), ("torch", ckpt, "torch")]:
        assert main(["predict", "--checkpoint", str(source), "--backend", backend,
                     "--precision", "fp32", str(image), "--out", str(tmp_path / dest),
                     "--json"]) == 0
        capsys.readouterr()
    ort_mask = np.asarray(Image.open(tmp_path / "ort" / "a.png"))
    torch_mask = np.asarray(Image.open(tmp_path / "torch" / "a.png"))
    assert ort_mask.shape == (37, 53)
    assert (ort_mask == torch_mask).mean() > 0.999


def test_cli_formats_are_the_engine_exporters() -> None:
    from fcnkit.cli.export import FORMATS
    from fcnkit.inference.export import EXPORTERS

    assert set(FORMATS) == set(EXPORTERS)


def test_export_format_from_output_suffix() -> None:
    from fcnkit.inference.export import export_format

    assert export_format("out/w.SafeTensors") == "safetensors"
    assert export_format("m.onnx") == export_format("model") == export_format(None) == "onnx"
    assert export_format("weights.bin") == "onnx"  # not a format: the default
    assert export_format("w.bin", "safetensors") == "safetensors"  # an explicit format wins
    # ... but not over a suffix naming another format: the file would not open again.
    with pytest.raises(InputError, match=r"names a \.safetensors file but --format is onnx; "
                       r"name it w\.onnx"):
        export_format("w.safetensors", "onnx")


def test_cli_export_format_from_output_suffix(tmp_path: Path, capsys) -> None:
    from fcnkit.cli import main

    model = build_model("fcn32s", num_classes=3, backbone="resnet18")
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, {"model_state": model.state_dict(),
                           "model_config": {"name": "fcn32s", "num_classes": 3,
                                            "backbone": "resnet18"}})
    out = tmp_path / "weights.safetensors"
    assert main(["export", str(ckpt), "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "safetensors"
    assert out.read_bytes()[8:9] == b"{"  # safetensors: u64 header length, then JSON
    assert main(["export", str(ckpt), "--format", "safetensors", "--dynamic"]) == 2
    assert "--dynamic apply to --format onnx only" in capsys.readouterr().err
