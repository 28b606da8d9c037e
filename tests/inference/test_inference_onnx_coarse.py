"""ONNX graphs that stop at the coarse scores (``--onnx-output coarse``).

Oracles: the fcnkit torch model itself (its ``forward`` and ``coarse_scores``), the
logits-output ONNX file of the same model, a hand-built ONNX graph whose scores torch
computes independently, and the labels' own definition (argmax of the backend's logits).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fcnkit.errors import InputError
from fcnkit.inference.backends import OnnxRuntimeBackend, open_backend
from fcnkit.inference.export import export_onnx, onnx_metadata, read_onnx_metadata
from fcnkit.inference.labels import predict_labels, supports_label_strips, whole_image_labels
from fcnkit.inference.lowres import convex_upsampler, labels_by_pruning
from fcnkit.models import build_model
from fcnkit.models.heads import make_upsampler
from fcnkit.runtime.checkpoint import save_checkpoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

CLASSES = ["background", "disc", "bar", "ring"]
# Odd sizes, 1×1, a size above the 64×96 trace, and one a multiple of 8.
SIZES = [(45, 71), (1, 1), (33, 65), (130, 161), (64, 96)]


def _checkpoint(**options) -> dict:
    torch.manual_seed(0)
    config = {"name": "fcn8s", "num_classes": len(CLASSES), "backbone": "resnet18",
              "width": 0.125, **options}
    config = {k: v for k, v in config.items() if v is not None}
    model = build_model(**config).eval()
    if config.get("upsample") == "deconv":
        # "deconv" starts at the bilinear kernel; a training step makes it a learned
        # C × C kernel (classes mixed, kernels no longer shared), which is what is refused.
        with torch.no_grad():
            model.final_upsampler.weight.add_(
                0.01 * torch.randn_like(model.final_upsampler.weight))
    return {"format": "fcnkit-checkpoint/1", "model_state": model.state_dict(),
            "model_config": config, "classes": CLASSES}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


# --- fast: refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"upsample": "deconv"},  # a learned C × C deconvolution: not one shared kernel
    {"name": "fcn_dilated", "upsample": "resize"},  # resize to the input size: no fixed grid
    {"name": "context_module", "backbone": None, "width": None},  # no final upsampler
], ids=["deconv", "resize", "context_module"])
def test_models_without_a_bilinear_last_upsampling_are_refused(options, tmp_path) -> None:
    ckpt = _checkpoint(**options)
    model = build_model(**ckpt["model_config"]).eval()
    model.load_state_dict(ckpt["model_state"])
    with pytest.raises(InputError, match="--onnx-output coarse needs") as error:
        export_onnx(model, tmp_path / "m.onnx", output="coarse")
    assert "\n" not in str(error.value) and "--onnx-output logits" in str(error.value)
    assert not list(tmp_path.iterdir())


def test_cli_refuses_coarse_output_of_a_learned_deconvolution(tmp_path, capsys) -> None:
    from fcnkit.cli import main

    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, _checkpoint(upsample="deconv"))
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "--dynamic", "--onnx-output", "coarse",
                 "-o", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "--onnx-output coarse" in err and "learned" in err and "--onnx-output logits" in err
    assert not out.exists()
    assert main(["export", str(ckpt), "--format", "safetensors", "--onnx-output",
                 "coarse"]) == 2
    assert "--onnx-output apply to --format onnx only" in _one_line_error(capsys)
    with pytest.raises(InputError, match="--onnx-output 'fine'"):
        export_onnx(build_model("fcn8s", num_classes=2, backbone="resnet18", width=0.125),
                    out, output="fine")


def test_cli_output_choices_are_the_exporters() -> None:
    from fcnkit.cli.export import ONNX_OUTPUT_CHOICES
    from fcnkit.inference.export import ONNX_OUTPUTS

    assert set(ONNX_OUTPUT_CHOICES) == set(ONNX_OUTPUTS)


# --- fast: a hand-built coarse graph ----------------------------------------------------------
#
# The graph is one 1×1 convolution at stride 8 (ceil(H/8) × ceil(W/8) scores); the metadata
# says "upsample ×8 bilinearly and crop at (0, 0)", as for fcnkit's FCN-8s.

STRIDE = 8


def _weights(classes: int = 3) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((classes, 3, 1, 1)).astype(np.float32)


def _bilinear_record() -> dict:
    layer = make_upsampler(3, STRIDE, "bilinear")  # the layer FCN-8s ends with
    return {"kind": "transposed_conv", "kernel_size": list(layer.kernel_size),
            "stride": list(layer.stride), "padding": list(layer.padding),
            "kernel": layer.weight[0, 0].tolist()}


def _props(**changes) -> dict[str, str]:
    values = {"format": "fcnkit-onnx/1", "model_config": {"name": "fcn8s", "num_classes": 3},
              "classes": CLASSES[:3], "output": "coarse", "final_upsampler": _bilinear_record(),
              "final_offset": [0, 0], **changes}
    return {"fcnkit." + k: v if isinstance(v, str) and k == "final_upsampler"
            else json.dumps(v) for k, v in values.items() if v is not None}


def _handmade(path: Path, props: dict[str, str], *, output: str = "coarse_scores") -> Path:
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("Conv", ["image", "w"], [output], strides=[STRIDE, STRIDE])
    graph = helper.make_graph(
        [node], "coarse",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 3, "h", "w"])],
        initializer=[numpy_helper.from_array(_weights(), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime of the last years reads
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("kind", ["transposed_conv", "interpolate"])
def test_handmade_coarse_graph_gives_torchs_logits_and_their_labels(kind, tmp_path) -> None:
    record = (_bilinear_record() if kind == "transposed_conv" else
              {"kind": "interpolate", "factor": STRIDE, "mode": "bilinear",
               "align_corners": False})
    path = _handmade(tmp_path / "m.onnx", _props(final_upsampler=record))
    opened = open_backend(path, backend="onnxruntime", num_classes=3)
    backend = opened.backend
    assert isinstance(backend, OnnxRuntimeBackend) and backend.coarse
    assert supports_label_strips(backend) and convex_upsampler(backend.final_upsampler)
    weight = torch.from_numpy(_weights())
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w)
        scores = F.conv2d(x, weight, stride=STRIDE)
        # Oracle: FCN-8s's own last layer, or F.interpolate, on torch's scores; crop at 0.
        with torch.no_grad():
            up = (make_upsampler(3, STRIDE, "bilinear")(scores) if kind == "transposed_conv"
                  else F.interpolate(scores, scale_factor=STRIDE, mode="bilinear",
                                     align_corners=False))
        want = up[..., :h, :w]
        logits = backend(x)
        assert logits.shape == (2, 3, h, w)
        torch.testing.assert_close(logits, want, atol=1e-5, rtol=1e-5)
        labels = whole_image_labels(backend, x)
        assert torch.equal(labels, logits.argmax(1)), (h, w)
        assert torch.equal(backend.predict_labels(x), labels)
    assert "coarse scores" in backend.describe()


def _damaged() -> dict[str, dict[str, str]]:
    record = _bilinear_record()
    negative = {**record, "kernel": [[-v for v in row] for row in record["kernel"]]}
    short = {**record, "kernel": record["kernel"][:-1]}
    return {
        "no final_upsampler": _props(final_upsampler=None),
        "no final_offset": _props(final_offset=None),
        "negative kernel": _props(final_upsampler=negative),
        "kernel rows missing": _props(final_upsampler=short),
        "unknown kind": _props(final_upsampler={"kind": "nearest", "factor": 8}),
        "interpolate align_corners": _props(final_upsampler={
            "kind": "interpolate", "factor": 8, "mode": "bilinear", "align_corners": True}),
        "huge factor": _props(final_upsampler={
            "kind": "interpolate", "factor": 10**9, "mode": "bilinear",
            "align_corners": False}),
        "negative offset": _props(final_offset=[-1, 0]),
        "unknown output": _props(output="labels"),
        "not JSON": _props(final_upsampler="{kind: transposed_conv"),
        "graph says coarse, metadata does not": _props(output=None, final_upsampler=None,
                                                       final_offset=None),
    }


@pytest.mark.parametrize("case", list(_damaged()))
def test_damaged_coarse_metadata_is_refused_in_one_line(case, tmp_path) -> None:
    path = _handmade(tmp_path / "damaged.onnx", _damaged()[case])
    with pytest.raises(InputError, match="damaged.onnx") as error:
        open_backend(path, backend="onnxruntime")
    assert "\n" not in str(error.value) and "export the checkpoint again" in str(error.value)
    with pytest.raises(InputError, match="damaged.onnx"):
        OnnxRuntimeBackend(path)  # the backend on its own checks the same


def test_metadata_says_coarse_but_the_graph_outputs_logits(tmp_path, capsys) -> None:
    from fcnkit.cli import main

    path = _handmade(tmp_path / "mixed.onnx", _props(), output="logits")
    with pytest.raises(InputError, match="outputs 'logits' but its metadata says"):
        OnnxRuntimeBackend(path)
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(image)
    assert main(["predict", "--checkpoint", str(path), "--backend", "onnxruntime",
                 str(image), "--out", str(tmp_path / "out")]) == 2
    assert "mixed.onnx" in _one_line_error(capsys)


# --- slow: real exports -----------------------------------------------------------------------


MODELS = {
    "bilinear": {"upsample": "bilinear"},  # grouped frozen deconvolution, crop at (0, 0)
    "interpolate": {"upsample": "interpolate"},
    # Caffe geometry: full C × C frozen bilinear weight, padding 0, crop at (31, 31).
    "caffe": {"backbone": "vgg16", "faithful": True},
}


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory) -> dict:
    ckpt = _checkpoint(**MODELS[request.param])
    model = build_model(**ckpt["model_config"]).eval()
    model.load_state_dict(ckpt["model_state"])
    root = tmp_path_factory.mktemp(f"coarse-{request.param}")
    files = {output: export_onnx(model, root / f"{output}.onnx", output=output,
                                 metadata=onnx_metadata(ckpt, output=output))
             for output in ("logits", "coarse")}  # seconds each
    return {"model": model, "ckpt": ckpt, **files}


@pytest.mark.slow
def test_coarse_file_records_the_final_upsampler(exported) -> None:
    meta = read_onnx_metadata(exported["coarse"])
    model = exported["model"]
    assert meta["output"] == "coarse"
    assert tuple(meta["final_offset"]) == tuple(model.final_offset)
    assert "coarse_scores" in meta["input"]
    session = ort.InferenceSession(str(exported["coarse"]), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["coarse_scores"]
    x = torch.randn(2, 3, 45, 71)
    (scores,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        want = model.coarse_scores(x)
    assert scores.shape == tuple(want.shape)
    assert np.abs(scores - want.numpy()).max() <= 1e-4
    # The logits file is as before: no coarse fields.
    assert "output" not in read_onnx_metadata(exported["logits"])


@pytest.mark.slow
def test_coarse_backend_labels_are_its_logits_argmax_bit_for_bit(exported) -> None:
    backend = open_backend(exported["coarse"], backend="onnxruntime",
                           num_classes=len(CLASSES)).backend
    assert backend.coarse and supports_label_strips(backend)
    stats: dict[str, int] = {}
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w)
        want = backend(x).argmax(1)
        assert torch.equal(whole_image_labels(backend, x), want), (h, w)
        assert torch.equal(backend.predict_labels(x), want), (h, w)
        assert torch.equal(predict_labels(backend, x, num_classes=len(CLASSES)), want)
        assert torch.equal(labels_by_pruning(backend, x, stats=stats), want)
    # The labels came from the coarse scores: most cells were settled without logits.
    assert stats["doubtful"] < stats["cells"]


@pytest.mark.slow
def test_coarse_backend_logits_match_the_logits_file_and_torch(exported) -> None:
    coarse = OnnxRuntimeBackend(exported["coarse"], num_classes=len(CLASSES))
    full = OnnxRuntimeBackend(exported["logits"], num_classes=len(CLASSES))
    agree = total = 0
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w)
        got = coarse(x)
        with torch.no_grad():
            torch_logits = exported["model"](x)
        # onnxruntime and torch sum the same float32 terms in different orders (and with
        # different convolution algorithms), so logits differ by rounding: ~1e-6 here; 1e-4
        # is the bound the logits-file test in test_inference_export.py uses.
        assert (got - full(x)).abs().max() <= 1e-4, (h, w)
        assert (got - torch_logits).abs().max() <= 1e-4, (h, w)
        # Where two classes are within that rounding, a label may flip.
        agree += int((coarse.predict_labels(x) == torch_logits.argmax(1)).sum())
        total += 2 * h * w
    assert agree >= 0.999 * total


@pytest.mark.slow
def test_open_backend_exports_a_checkpoint_with_the_coarse_output_when_it_can() -> None:
    ckpt = _checkpoint()
    model = build_model(**ckpt["model_config"]).eval()
    model.load_state_dict(ckpt["model_state"])
    opened = open_backend(ckpt, backend="onnxruntime")
    assert opened.backend.coarse
    x = torch.randn(1, 3, 37, 50)
    with torch.no_grad():
        want = model(x)
    assert (opened.backend(x) - want).abs().max() <= 1e-4  # rounding, as above
    assert not open_backend(_checkpoint(upsample="deconv"), backend="onnxruntime").backend.coarse


@pytest.mark.slow
def test_cli_eval_and_predict_on_a_coarse_file_match_the_logits_file(tiny_run, tmp_path,
                                                                      capsys) -> None:
    from fcnkit.cli import main

    files = {}
    for output in ("logits", "coarse"):
        files[output] = tmp_path / f"{output}.onnx"
        assert main(["export", str(tiny_run["ckpt"]), "--dynamic", "--onnx-output", output,
                     "-o", str(files[output]), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["onnx_output"] == (
            "coarse_scores" if output == "coarse" else "logits")
    results = {}
    for output, path in files.items():
        assert main(["eval", "--checkpoint", str(path), "--backend", "onnxruntime",
                     "--data", f"synth:{tiny_run['data']}", "--json"]) == 0
        results[output] = json.loads(capsys.readouterr().out)
        assert main(["predict", "--checkpoint", str(path), "--backend", "onnxruntime",
                     str(tiny_run["images"]), "--out", str(tmp_path / output), "--json"]) == 0
        capsys.readouterr()
    # The same confusion up to a label flipped by rounding in ≤ 0.1 % of the pixels.
    assert results["coarse"]["miou"] == pytest.approx(results["logits"]["miou"], abs=2e-3)
    assert results["coarse"]["pixel_acc"] == pytest.approx(results["logits"]["pixel_acc"],
                                                           abs=1e-3)
    masks = sorted((tmp_path / "coarse").glob("*.png"))
    assert masks
    for mask in masks:
        coarse = np.asarray(Image.open(mask))
        logits = np.asarray(Image.open(tmp_path / "logits" / mask.name))
        assert coarse.shape == logits.shape and (coarse == logits).mean() >= 0.999
