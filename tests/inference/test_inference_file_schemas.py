"""Fields read from export files pass one schema per kind: ONNX metadata that is not JSON
or of the wrong type, an ONNX graph whose output channels contradict the metadata's
num_classes, safetensors metadata of the wrong JSON type: one line naming the file and
the field, never a traceback or masks with ids beyond the declared classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fcnkit.errors import InputError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _onnx_file(path: Path, channels: int, props: dict[str, str]) -> Path:
    """A 1x1 convolution 3 -> ``channels`` with symbolic N/H/W and the given metadata."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(
        torch.randn(channels, 3, 1, 1).numpy(), name="w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = "fcnkit." + key, value
    onnx.save(model, str(path))
    return path


def _props(**changes) -> dict[str, str]:
    values = {"format": json.dumps("fcnkit-onnx/1"),
              "model_config": json.dumps({"name": "fcn32s", "num_classes": 2}),
              "classes": json.dumps(["a", "b"]), "palette": json.dumps([[0, 0, 0], [9, 9, 9]]),
              "mean": json.dumps([0.5, 0.5, 0.5]), "std": json.dumps([0.25, 0.25, 0.25])}
    values.update(changes)
    return values


def test_a_consistent_onnx_file_opens(tmp_path):
    from fcnkit.inference.backends import open_backend

    opened = open_backend(_onnx_file(tmp_path / "m.onnx", 2, _props()), backend="onnxruntime")
    assert opened.num_classes == 2
    assert opened.backend(torch.zeros(1, 3, 4, 5)).shape == (1, 2, 4, 5)


def test_graph_channels_against_declared_num_classes(tmp_path):
    from fcnkit.inference.backends import open_backend

    path = _onnx_file(tmp_path / "m.onnx", 9, _props())  # declares 2, outputs 9
    with pytest.raises(InputError, match=r"outputs 9 channels.*num_classes=2") as info:
        open_backend(path, backend="onnxruntime")
    assert str(path) in str(info.value)


BAD_METADATA = {
    "model_config not JSON": ({"model_config": "{not json"}, "model_config"),
    "model_config a list": ({"model_config": json.dumps([1, 2])}, "model_config"),
    "num_classes a string": ({"model_config": json.dumps({"name": "fcn32s",
                                                          "num_classes": "2"})},
                             "model_config"),
    "classes a number": ({"classes": json.dumps(7)}, "classes"),
    "palette of strings": ({"palette": json.dumps(["red", "blue"])}, "palette"),
    "mean a string": ({"mean": json.dumps("imagenet")}, "mean"),
}


@pytest.mark.parametrize("name", list(BAD_METADATA))
def test_onnx_metadata_fields_are_checked(tmp_path, name):
    from fcnkit.inference.backends import open_backend

    changes, field = BAD_METADATA[name]
    path = _onnx_file(tmp_path / "m.onnx", 2, _props(**changes))
    with pytest.raises(InputError) as info:
        open_backend(path, backend="onnxruntime")
    message = str(info.value)
    assert str(path) in message and field in message and "\n" not in message


@pytest.mark.parametrize("field,value", [
    ("classes", json.dumps(5)), ("palette", json.dumps({"a": 1})),
    ("model_config", json.dumps({"name": "fcn32s", "num_classes": 2.5})),
])
def test_safetensors_metadata_of_the_wrong_type(tmp_path, field, value):
    from safetensors.torch import save_file

    from fcnkit.models.weights import SAFETENSORS_FORMAT
    from fcnkit.runtime.checkpoint import load_checkpoint

    metadata = {"format": json.dumps(SAFETENSORS_FORMAT),
                "model_config": json.dumps({"name": "fcn32s", "num_classes": 2}),
                "classes": json.dumps(["a", "b"]), field: value}
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata=metadata)
    with pytest.raises(InputError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and field in str(info.value)
