"""Defects found by a practitioner's review of ``fcnkit eval``, ``predict`` and ``export``.

Oracles: the documented failure contract (one line naming the file and the fix, exit
code 2, nothing written) and onnxruntime's own view of a hand-built graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fcnkit.errors import InputError
from fcnkit.inference.backends import OnnxRuntimeBackend

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _static_onnx(path: Path, shape: list[int | str]) -> Path:
    """A 1×1 convolution (3 → 2 channels) whose input has the given (partly fixed) shape,
    as ``fcnkit export`` without ``--dynamic`` writes it (batch 1 at the traced size)."""
    from onnx import TensorProto, helper, numpy_helper  # local: optional dependency

    weights = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1) - 2.5
    node = helper.make_node("Conv", ["image", "w"], ["logits"])
    out_shape = [shape[0], 2, *shape[2:]]
    graph = helper.make_graph(
        [node], "static",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_static_onnx_at_another_size_is_one_line_input_error(tmp_path: Path) -> None:
    # Before: onnxruntime's InvalidArgument escaped as a traceback (exit 1) from
    # `fcnkit eval/predict --checkpoint static.onnx` on any image not 64x96.
    path = _static_onnx(tmp_path / "static.onnx", [1, 3, 8, 12])
    backend = OnnxRuntimeBackend(path, num_classes=2)
    assert backend(torch.zeros(1, 3, 8, 12)).shape == (1, 2, 8, 12)  # the traced size runs
    for shape in [(1, 3, 5, 7), (2, 3, 8, 12)]:
        with pytest.raises(InputError) as info:
            backend(torch.zeros(shape))
        message = str(info.value)
        assert "\n" not in message
        assert "static.onnx" in message and "--dynamic" in message and "1x3x8x12" in message
        with pytest.raises(InputError):
            backend.predict_labels(torch.zeros(shape))


def test_dynamic_onnx_is_not_refused(tmp_path: Path) -> None:
    path = _static_onnx(tmp_path / "dynamic.onnx", ["N", 3, "H", "W"])
    backend = OnnxRuntimeBackend(path, num_classes=2)
    assert backend(torch.zeros(3, 3, 5, 7)).shape == (3, 2, 5, 7)



@pytest.mark.slow
def test_torchvision_weights_exported_to_safetensors_load_back(tmp_path: Path) -> None:
    # Before: `fcnkit export tv.pth --model fcn_dilated --format safetensors` wrote a
    # model_config without the options read off the file and with a preprocessing dict,
    # which load_checkpoint refused ("not written by fcnkit or was modified").
    torchvision = pytest.importorskip("torchvision")
    from fcnkit.inference.backends import open_backend  # local: only this test
    from fcnkit.inference.export import export_checkpoint  # local: only this test

    torch.manual_seed(0)
    reference = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=3, aux_loss=False).eval()
    source = tmp_path / "tv.pth"
    torch.save(reference.state_dict(), source)
    target = tmp_path / "tv.safetensors"
    export_checkpoint(source, target, format="safetensors", model="fcn_dilated", num_classes=3)
    backend = open_backend(target).backend
    x = torch.randn(1, 3, 35, 47)
    with torch.no_grad():
        expected = reference(x)["out"]
        assert torch.allclose(backend(x), expected, atol=1e-5)
        assert torch.equal(backend.predict_labels(x), expected.argmax(1))


def test_predict_checkpoint_takes_a_generator_of_inputs(tmp_path: Path) -> None:
    # Before: predict_checkpoint consumed an iterator to check the inputs, then handed the
    # exhausted iterator to predict_paths: "no input images given".
    from PIL import Image  # local: only this test writes an image

    from fcnkit.inference.predict import predict_checkpoint  # local: only this test
    from fcnkit.models import build_model  # local: only this test
    from fcnkit.runtime.checkpoint import save_checkpoint  # local: only this test

    torch.manual_seed(0)
    config = {"name": "fcn8s", "num_classes": 3, "backbone": "resnet18", "width": 0.125}
    model = build_model(**config).eval()
    checkpoint = save_checkpoint(tmp_path / "best.pt", {
        "model_state": model.state_dict(), "model_config": config,
        "classes": ["a", "b", "c"]})
    image = tmp_path / "photo.png"
    Image.fromarray(np.full((20, 28, 3), 90, np.uint8)).save(image)
    report = predict_checkpoint(checkpoint, (p for p in [image]), tmp_path / "preds")
    assert report["num_images"] == 1
    assert (tmp_path / "preds" / "photo.png").is_file()


def test_a_window_that_needs_too_many_tiles_is_refused_before_any_forward_pass():
    # `--window 64 --overlap 0.99` (or `--window 1`) on a 150x210 image ran for more than
    # 300 s: thousands of forward passes per image, with no estimate first.
    from fcnkit.inference.labels import predict_logits
    from fcnkit.limits import MAX_TILES_PER_IMAGE

    calls = []

    def model(x):
        calls.append(x.shape)
        return x[:, :2]

    image = torch.zeros(1, 3, 150, 210)
    with pytest.raises(InputError, match=r"87x147 tiles per image = 12789 tiles .* 10000"):
        predict_logits(model, image, num_classes=2, window=64, overlap=0.99)
    with pytest.raises(InputError, match=r"--window .* --overlap"):
        predict_logits(model, image, num_classes=2, window=1, overlap=0.0)
    assert calls == []
    # At the limit it runs: 100 x 100 tiles of 2 x 2 on a 200 x 200 image, 10 000 exactly.
    assert MAX_TILES_PER_IMAGE == 10_000
    out = predict_logits(model, torch.ones(1, 3, 200, 200), num_classes=2, window=2,
                         overlap=0.0)
    assert len(calls) == 10_000 and torch.equal(out, torch.ones(1, 2, 200, 200))


def test_torch_only_options_with_onnxruntime_are_named_in_a_warning(tmp_path):
    # --precision bf16 with an .onnx file was silently ignored.
    from fcnkit.errors import FcnkitWarning
    from fcnkit.inference.backends import open_backend

    bogus = tmp_path / "m.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.warns(FcnkitWarning, match="apply to the torch backend"), \
            pytest.raises(InputError, match="m.onnx"):
        open_backend(bogus, precision="bf16")
