"""Export a trained model: ONNX with dynamic batch/height/width, optional int8.

:func:`export_checkpoint` is the entry point; formats are a dispatch table
(:data:`EXPORTERS`, name → writer) so another format is one function and one entry.

ONNX (``format="onnx"``):

* ``torch.onnx.export(..., dynamo=True)`` traces the model once at ``size`` with symbolic
  batch, height and width (``dynamic=True``), so one file serves every ``H, W >= 1``. The
  FCN heads combine sizes only symbolically (:func:`fcnkit.models.heads.fuse`,
  :func:`~fcnkit.models.heads.crop_to`), which is what keeps the crops right at sizes other
  than the traced one. ``dynamic=False`` fixes batch 1 and ``size``.
* The graph is checked with ``onnx.checker.check_model(full_check=True)``.
* The preprocessing and the labels travel with the model as ``metadata_props`` (string →
  string, values JSON): ``fcnkit.format``, ``fcnkit.model_config``, ``fcnkit.classes``,
  ``fcnkit.palette``, ``fcnkit.preprocessing`` (the checkpoint's own
  :class:`~fcnkit.models.preprocess.Preprocessing`: ImageNet RGB for fcnkit's models,
  Caffe BGR 0–255 for pytorch-fcn weights), ``fcnkit.mean``, ``fcnkit.std`` (that
  record's) and ``fcnkit.input`` (the same in words); read them back with
  :func:`read_onnx_metadata`, and the preprocessing with :func:`onnx_preprocessing`.
* ``output="coarse"`` (``fcnkit export --onnx-output coarse``) stops the graph at the
  scores before the last upsampling (output ``coarse_scores``, ``(N, C, h, w)``), for
  models whose last upsampling is bilinear (:func:`final_upsampler_record`). The metadata
  then records how to finish the network outside the graph: ``fcnkit.output``
  (``"coarse"``), ``fcnkit.final_upsampler`` (the layer's geometry and its one kernel, or
  the interpolation) and ``fcnkit.final_offset`` (the crop to the input);
  :func:`upsampler_from_record` rebuilds the layer, and the onnxruntime backend computes
  labels exactly from the coarse scores (:mod:`fcnkit.inference.lowres`).
* ``quantize="int8"`` adds static QDQ quantization with ``onnxruntime.quantization``
  (:func:`quantize_int8`), calibrated on images from a dataset.

Every file is written atomically: an error never leaves a half-written model.

Example::

    from fcnkit.inference.export import export_checkpoint
    report = export_checkpoint("runs/demo/best.pt", "model.onnx", dynamic=True)
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcnkit.atomic import atomic_path, check_regular_file
from fcnkit.data import open_dataset
from fcnkit.data.transforms import eval_transform
from fcnkit.errors import InputError, first_line
from fcnkit.inference.export_safetensors import checkpoint_from_model, export_safetensors
from fcnkit.inference.labels import supports_label_strips
from fcnkit.inference.lowres import convex_upsampler
from fcnkit.models import build_model
from fcnkit.models.heads import Interpolate, grouped_bilinear
from fcnkit.models.preprocess import Preprocessing, preprocessing_from
from fcnkit.models.weights import fit_foreign_options, read_state_file
from fcnkit.outputs import check_outputs
from fcnkit.runtime.checkpoint import load_checkpoint, model_from_checkpoint, run_checkpoint
from fcnkit.schemas import COARSE_ONNX_METADATA, EXPORT_METADATA, ONNX_OUTPUT, check_fields

__all__ = [
    "EXPORTERS",
    "ONNX_FORMAT",
    "ONNX_OUTPUTS",
    "DEFAULT_EXPORT_SIZE",
    "export_checkpoint",
    "export_format",
    "export_onnx",
    "check_onnx_metadata",
    "decode_metadata",
    "final_upsampler_record",
    "onnx_metadata",
    "onnx_preprocessing",
    "read_onnx_metadata",
    "quantize_int8",
    "require",
    "upsampler_from_record",
]

#: Value of the ``fcnkit.format`` metadata entry of the ONNX files written here.
ONNX_FORMAT = "fcnkit-onnx/1"
#: Trace size (H, W) of the example input; with ``dynamic=True`` it is only an example.
DEFAULT_EXPORT_SIZE = (64, 96)
#: Where the metadata keys start (``fcnkit.mean`` ...).
_PREFIX = "fcnkit."
#: What an exported graph can output (``output=``, ``--onnx-output``) → the output's name:
#: full-resolution logits, or the scores before the last (bilinear) upsampling.
ONNX_OUTPUTS = {"logits": "logits", "coarse": "coarse_scores"}


def input_convention(preprocessing: Preprocessing, output: str = "logits") -> str:
    """What the ONNX input expects and the output is, in words (stored as ``fcnkit.input``)."""
    order = ("" if preprocessing.channel_order == "RGB"
             else f", channels reordered to {preprocessing.channel_order}")
    scale = "" if preprocessing.scale == 1 else f", multiplied by {preprocessing.scale:g}"
    result = ("logits NCHW at the input size, argmax over C gives class ids"
              if output == "logits" else
              "coarse_scores NCHW before the last upsampling; fcnkit.final_upsampler applied "
              "to them, cropped to the input size at fcnkit.final_offset, gives the logits")
    return (f"float32 NCHW, RGB pixel values in [0, 1]{order}{scale}, then normalised per "
            f"channel: (x - mean) / std; output: {result}")


def require(module: str, extra: str = "onnx") -> Any:
    """Import an optional dependency, or raise a one-line :class:`InputError` naming the extra.

    Example: ``ort = require("onnxruntime")``.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"{module} is not installed; install the optional dependencies with "
            f"pip install 'fcnkit[{extra}]'"
        ) from None


# --- metadata ------------------------------------------------------------------------------


def onnx_metadata(ckpt: Mapping[str, Any], *, output: str = "logits") -> dict[str, str]:
    """The ``metadata_props`` of an exported checkpoint: preprocessing, classes, palette.

    Values are JSON strings. The preprocessing is the checkpoint's own (its model config's
    ``preprocessing``; "imagenet" when it records none), the one the torch backend applies.
    ``output`` (a key of :data:`ONNX_OUTPUTS`) only changes the words of ``fcnkit.input``;
    :func:`export_onnx` adds the fields a coarse output needs.
    """
    config = {k: v for k, v in dict(ckpt["model_config"]).items()
              if k not in ("weights", "backbone_weights")}
    preprocessing = preprocessing_from(config.get("preprocessing"))
    values: dict[str, Any] = {
        "format": ONNX_FORMAT,
        "model_config": config,
        "classes": list(ckpt.get("classes") or []),
        "palette": [list(map(int, c)) for c in (ckpt.get("palette") or [])],
        "preprocessing": preprocessing.to_dict(),
        "mean": list(preprocessing.mean),
        "std": list(preprocessing.std),
        "input": input_convention(preprocessing, output),
    }
    return {_PREFIX + k: json.dumps(v) for k, v in values.items()}


def onnx_preprocessing(metadata: Mapping[str, Any]) -> Preprocessing:
    """The normalisation an exported model expects, from :func:`read_onnx_metadata`'s dict.

    ``fcnkit.preprocessing`` when the file has it; files written before it existed carry
    the preprocessing only in their model config (ImageNet when that records none).
    """
    if metadata.get("preprocessing") is not None:
        return preprocessing_from(metadata["preprocessing"])
    return preprocessing_from((metadata.get("model_config") or {}).get("preprocessing"))


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The fcnkit metadata of an ONNX file, decoded: ``{"model_config": {...}, "mean": [...]}``.

    Raises:
        InputError: the file is missing or not an ONNX model written by fcnkit export, or
            a metadata field is not JSON or not of its type (:data:`fcnkit.schemas.
            EXPORT_METADATA`).
    """
    onnx = require("onnx")
    file = check_regular_file(path, "ONNX model")
    if not file.is_file():
        raise InputError(f"ONNX model {file} does not exist; write one with fcnkit export")
    try:
        model = onnx.load(str(file), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others for a damaged file
        raise InputError(f"{file} is not an ONNX model ({first_line(exc)[:120]}); "
                         "write one with fcnkit export") from None
    return check_onnx_metadata({p.key: p.value for p in model.metadata_props}, file)


def check_onnx_metadata(props: Mapping[str, str], file: str | os.PathLike[str]
                        ) -> dict[str, Any]:
    """The ``fcnkit.*`` entries of ``metadata_props`` (key → JSON string), decoded and
    checked as :func:`read_onnx_metadata` describes; ``file`` names the model in errors.

    A file whose ``fcnkit.output`` is ``"coarse"`` must also carry a valid
    ``fcnkit.final_upsampler`` and ``fcnkit.final_offset``
    (:data:`fcnkit.schemas.COARSE_ONNX_METADATA`).
    """
    props = {k[len(_PREFIX):]: v for k, v in props.items() if k.startswith(_PREFIX)}
    if props.get("format") != json.dumps(ONNX_FORMAT):
        raise InputError(f"{file} has no fcnkit metadata (format {ONNX_FORMAT}); export the "
                         "checkpoint with fcnkit export")
    meta: dict[str, Any] = {}
    for key, value in props.items():
        try:
            meta[key] = json.loads(value)
        except ValueError:
            raise InputError(f"ONNX model {file} has metadata field {key} that is not JSON "
                             f"({value[:40]!r}); export the checkpoint again") from None
    fix = "export the checkpoint again with fcnkit export"
    check_fields(meta, EXPORT_METADATA, file=file, what="ONNX model", fix=fix)
    check_fields(meta, ONNX_OUTPUT, file=file, what="ONNX model", fix=fix)
    if meta.get("output") == "coarse":
        check_fields(meta, COARSE_ONNX_METADATA, file=file, what="ONNX model", fix=fix)
    return meta


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """The ``fcnkit.*`` entries of an ONNX model's ``metadata_props``, prefix dropped and
    values JSON-decoded, leniently (other entries, and values that are not JSON, are left
    out: a file of another tool gives ``{}``); :func:`read_onnx_metadata` is the strict
    reader of a file."""
    decoded: dict[str, Any] = {}
    for key, value in props.items():
        if key.startswith(_PREFIX):
            try:
                decoded[key[len(_PREFIX):]] = json.loads(value)
            except ValueError:
                continue
    return decoded


# --- the coarse output ----------------------------------------------------------------------


def final_upsampler_record(model: nn.Module) -> dict[str, Any]:
    """The JSON record of ``model``'s last upsampling (``fcnkit.final_upsampler``).

    ``{"kind": "transposed_conv", "kernel_size": [k, k], "stride": [s, s], "padding": [p, p],
    "kernel": k × k numbers}`` for a frozen bilinear deconvolution (its one non-negative
    kernel, shared by every class; float32 values, which JSON keeps exactly), or ``{"kind":
    "interpolate", "factor": f, "mode": "bilinear", "align_corners": false}`` for
    :class:`fcnkit.models.heads.Interpolate`.

    Raises:
        InputError: the model has no coarse-score protocol (``coarse_scores``,
            ``final_upsampler``, ``final_offset``), or its last upsampling is not bilinear
            (a learned deconvolution, a resize to the input size).
    """
    fix = "export with --onnx-output logits"
    if not supports_label_strips(model):
        raise InputError("--onnx-output coarse needs a model whose last upsampling is a fixed "
                         f"bilinear upsampling with an integer factor, which "
                         f"{type(model).__name__} does not expose; {fix}")
    upsampler = model.final_upsampler
    if isinstance(upsampler, Interpolate):
        return {"kind": "interpolate", "factor": int(upsampler.factor), "mode": "bilinear",
                "align_corners": False}
    square = isinstance(upsampler, nn.ConvTranspose2d) and all(
        len(set(getattr(upsampler, name))) == 1
        for name in ("kernel_size", "stride", "padding"))
    if (not convex_upsampler(upsampler) or not square
            or tuple(upsampler.output_padding) != (0, 0)):
        raise InputError("--onnx-output coarse needs a model whose last upsampling is bilinear "
                         "(upsample 'bilinear' or 'interpolate'); this model's is a learned "
                         f"{type(upsampler).__name__}; {fix}")
    weight = upsampler.weight.detach().to("cpu", torch.float32)
    return {"kind": "transposed_conv", "kernel_size": list(upsampler.kernel_size),
            "stride": list(upsampler.stride), "padding": list(upsampler.padding),
            # convex_upsampler checked every class's kernel equals class 0's.
            "kernel": weight[0, 0].tolist()}


def upsampler_from_record(record: Mapping[str, Any], num_classes: int) -> nn.Module:
    """The final upsampler a :func:`final_upsampler_record` describes, for ``num_classes``
    classes: :class:`~fcnkit.models.heads.Interpolate`, or a grouped ``ConvTranspose2d``
    (:class:`~fcnkit.models.heads.GroupedBilinear`: one kernel per class, no bias,
    frozen) in eval mode on the CPU. ``record`` must have passed
    :data:`fcnkit.schemas.COARSE_ONNX_METADATA` (:func:`check_onnx_metadata`)."""
    if record["kind"] == "interpolate":
        return Interpolate(int(record["factor"])).eval()
    layer = grouped_bilinear(num_classes, tuple(record["kernel_size"]),
                             tuple(record["stride"]), tuple(record["padding"]),
                             values=record["kernel"])
    return layer.eval()


class _CoarseScores(nn.Module):
    """``model.coarse_scores(x)`` as a module's forward, for the exporter to trace."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = self.model.coarse_scores(x)
        return scores


# --- ONNX ----------------------------------------------------------------------------------


def export_onnx(
    model: nn.Module,
    out: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    dynamic: bool = True,
    opset: int | None = None,
    size: Sequence[int] = DEFAULT_EXPORT_SIZE,
    output: str = "logits",
) -> Path:
    """Export ``model`` (logits at the input size) to an ONNX file with the dynamo exporter.

    Args:
        model: maps ``(N, 3, H, W)`` to ``(N, C, H, W)``; exported in eval mode on the CPU
            in float32 (the caller's model is not modified).
        out: target ``.onnx`` file (written atomically; parents created).
        metadata: extra ``metadata_props`` (e.g. :func:`onnx_metadata`).
        dynamic: symbolic batch, height and width (input ``image``, output ``logits``);
            else batch 1 at ``size``.
        opset: ONNX opset version (``None``: the exporter's default).
        size: ``(H, W)`` of the example input the model is traced with.
        output: ``"logits"``, or ``"coarse"``: the graph outputs ``coarse_scores``
            (``model.coarse_scores(x)``, before the last upsampling) and the metadata gets
            ``fcnkit.output``, ``fcnkit.final_upsampler`` (:func:`final_upsampler_record`)
            and ``fcnkit.final_offset``; only for models whose last upsampling is bilinear.

    Returns:
        ``out`` as a Path. Raises InputError when the exporter rejects the model or opset,
        or ``output`` is unknown or does not apply to the model.
    """
    if output not in ONNX_OUTPUTS:
        raise InputError(f"--onnx-output {output!r} is not supported; choose one of "
                         f"{', '.join(ONNX_OUTPUTS)}")
    metadata = dict(metadata or {})
    if output == "coarse":  # refused before the slow imports and the trace
        record = final_upsampler_record(model)
        metadata.update({_PREFIX + "output": json.dumps("coarse"),
                         _PREFIX + "final_upsampler": json.dumps(record),
                         _PREFIX + "final_offset": json.dumps(
                             [int(v) for v in model.final_offset])})
    require("onnxscript")
    onnx = require("onnx")
    model = _cpu_float_copy(model)
    if output == "coarse":
        model = _CoarseScores(model)
    height, width = (int(v) for v in size)
    example = torch.zeros(1 if not dynamic else 2, 3, height, width)
    dynamic_shapes = None
    if dynamic:
        dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"),
                3: torch.export.Dim("width")}
        dynamic_shapes = ({**dims},)
    target = Path(out)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and fallback chatter
        raw = Path(tmp) / "model.onnx"
        try:
            program = torch.onnx.export(
                model, (example,), dynamo=True, dynamic_shapes=dynamic_shapes,
                opset_version=opset, input_names=["image"],
                output_names=[ONNX_OUTPUTS[output]],
                verbose=False, external_data=False,
            )
        except Exception as exc:  # the exporter wraps failures in several error types
            if opset is not None:
                raise InputError(f"--opset {opset} failed to export "
                                 f"({first_line(exc)[:160]}); try the default opset") from None
            raise
        program.save(str(raw))
        graph = onnx.load(str(raw))
        for key, value in metadata.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(graph, full_check=True)
        with atomic_path(target) as tmp_target:
            onnx.save(graph, str(tmp_target))
    return target


def _cpu_float_copy(model: nn.Module) -> nn.Module:
    copied = copy.deepcopy(model).cpu().float().eval()
    copied.to(memory_format=torch.contiguous_format)
    return copied


# --- int8 ----------------------------------------------------------------------------------


def quantize_int8(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    calibration: Iterable[torch.Tensor],
) -> Path:
    """Static int8 quantization (QDQ, per-channel weights) of an fp32 ONNX model.

    Activations get their ranges from running the model on ``calibration`` (MinMax,
    onnxruntime's default calibrator); weights are quantized per output channel
    (``QuantFormat.QDQ``, ``QInt8`` weights and ``QUInt8`` activations — onnxruntime's
    recommended CPU setting). Metadata is carried over.

    Args:
        source: fp32 ONNX model (from :func:`export_onnx`).
        out: target file, written atomically.
        calibration: normalised ``(1, 3, H, W)`` float tensors (sizes may differ when
            the model is dynamic).

    Returns:
        ``out`` as a Path.
    """
    onnx = require("onnx")
    quantization = require("onnxruntime.quantization")
    # local: optional dependency (onnxruntime, the onnx extra)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [t.detach().cpu().float().numpy() for t in calibration]
    if not batches:
        raise InputError("no calibration images; pass a dataset with images to --calibrate")

    class _Reader(quantization.CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self._items = iter([{name: b} for b in batches])

        def get_next(self) -> dict[str, Any] | None:
            return next(self._items, None)

    source_model = onnx.load(str(source))
    input_name = source_model.graph.input[0].name
    metadata = [(p.key, p.value) for p in source_model.metadata_props]
    target = Path(out)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "int8.onnx"
        # Shape inference + graph optimisation first, as onnxruntime's docs recommend.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantization.quantize_static(
            str(prepared), str(quantized), _Reader(input_name),
            quant_format=quantization.QuantFormat.QDQ,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,
        )
        graph = onnx.load(str(quantized))
        del graph.metadata_props[:]
        for key, value in metadata:
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        entry = graph.metadata_props.add()
        entry.key, entry.value = _PREFIX + "quantization", json.dumps(
            {"type": "int8", "format": "QDQ", "calibration_images": len(batches)})
        onnx.checker.check_model(graph)
        with atomic_path(target) as tmp_target:
            onnx.save(graph, str(tmp_target))
    return target


def calibration_images(data: str, *, split: str = "train", count: int = 16
                       ) -> list[torch.Tensor]:
    """Up to ``count`` normalised images ``(1, 3, H, W)`` of a dataset split, in order."""
    dataset = open_dataset(data, split, transform=eval_transform())
    if len(dataset) == 0:
        raise InputError(f"--calibrate {data}: split {split!r} holds no images; pass a "
                         "dataset with images")
    images = []
    for index in range(min(count, len(dataset))):
        image = dataset[index][0]
        images.append(torch.as_tensor(image).unsqueeze(0).float())
    return images


# --- entry point -----------------------------------------------------------------------------


def _export_onnx_checkpoint(ckpt: Mapping[str, Any], out: Path, **options: Any) -> dict:
    quantize = options.pop("quantize", None)
    calibrate = options.pop("calibrate", None)
    calibration_split = options.pop("calibration_split", "train")
    calibration_count = options.pop("calibration_images", 16)
    output = options.pop("onnx_output", None) or "logits"
    if quantize not in (None, "int8"):
        raise InputError(f"--quantize {quantize!r} is not supported; pass int8")
    if quantize and not calibrate:
        raise InputError("--quantize int8 needs --calibrate DATA (a dataset to calibrate on)")
    if calibrate and not quantize:
        raise InputError("--calibrate is only used with --quantize int8; add --quantize int8")
    if output not in ONNX_OUTPUTS:
        raise InputError(f"--onnx-output {output!r} is not supported; choose one of "
                         f"{', '.join(ONNX_OUTPUTS)}")
    model = model_from_checkpoint(ckpt)
    if output == "coarse":
        final_upsampler_record(model)  # refused before the calibration images are read
    images = (calibration_images(calibrate, split=calibration_split, count=calibration_count)
              if quantize else None)  # read the data before the slow export
    metadata = onnx_metadata(ckpt, output=output)
    report: dict[str, Any] = {"format": "onnx", "dynamic": bool(options.get("dynamic", True)),
                              "onnx_output": ONNX_OUTPUTS[output]}
    if quantize:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", metadata=metadata,
                               output=output, **options)
            quantize_int8(fp32, out, images)
        report.update(quantize="int8", calibration_images=len(images))
    else:
        export_onnx(model, out, metadata=metadata, output=output, **options)
    report["output"] = str(out)
    report["bytes"] = out.stat().st_size
    return report


def _export_safetensors_checkpoint(ckpt: Mapping[str, Any], out: Path, **options: Any) -> dict:
    if options:
        raise InputError(f"--format safetensors takes no {', '.join(sorted(options))} option; "
                         "those are for --format onnx")
    path = export_safetensors(ckpt, out)
    config = dict(ckpt["model_config"])
    return {"format": "safetensors", "output": str(path), "bytes": path.stat().st_size,
            "tensors": len(ckpt["model_state"]), "model_config": config,
            "preprocessing": preprocessing_from(config.get("preprocessing")).name}


#: Export writers by format name: ``writer(checkpoint_dict, out_path, **options) -> report``.
EXPORTERS: dict[str, Callable[..., dict[str, Any]]] = {
    "onnx": _export_onnx_checkpoint,
    "safetensors": _export_safetensors_checkpoint,
}


def export_format(out: str | os.PathLike[str] | None, format: str | None = None) -> str:
    """The format to write: ``format`` when given, else the one the output file's suffix
    names (``model.safetensors`` → ``"safetensors"``; a key of :data:`EXPORTERS`), else
    ``"onnx"``.

    Raises:
        InputError: ``format`` contradicts a suffix that names another format (ONNX bytes
            in ``x.safetensors``: eval, predict and ``--init-from`` pick the reader by the
            suffix and could not open the file).
    """
    suffix = Path(out).suffix.lower().lstrip(".") if out is not None else ""
    if format is not None:
        if suffix in EXPORTERS and suffix != format:
            raise InputError(f"--output {out} names a .{suffix} file but --format is {format}; "
                             f"name it {Path(str(out)).with_suffix('.' + format).name} or "
                             "drop --format")
        return format
    return suffix if suffix in EXPORTERS else "onnx"


def export_checkpoint(
    checkpoint: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str] | None = None,
    *,
    format: str = "onnx",
    model: str | None = None,
    num_classes: int = 21,
    model_options: Mapping[str, Any] | None = None,
    force: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Export a fcnkit checkpoint in ``format`` (a key of :data:`EXPORTERS`).

    Args:
        checkpoint: a checkpoint path (file, or run directory: best.pt, else last.pt) or
            a dict from :func:`fcnkit.runtime.checkpoint.load_checkpoint`.
        out: target file (default: the checkpoint's path with the format's suffix).
        format: ``"onnx"`` or ``"safetensors"`` (weights + metadata, see
            :mod:`fcnkit.inference.export_safetensors`).
        model, num_classes, model_options: with ``model``, ``checkpoint`` is foreign weights
            (torchvision, pytorch-fcn, a state dict) that ``build_model(model,
            weights=checkpoint, ...)`` loads; they are exported as that fcnkit model.
            ``model_options`` may not name ``name``, ``num_classes`` or ``weights``.
        force: write ``out`` even when it is the source or a run's state
            (:func:`fcnkit.outputs.check_outputs`; refused before anything is loaded).
        **options: passed to the format's writer. ONNX: ``dynamic`` (default True),
            ``opset``, ``size``, ``onnx_output`` (``"logits"``, the default, or ``"coarse"``:
            :func:`export_onnx`'s ``output``), ``quantize`` (``"int8"``), ``calibrate``
            (dataset spec), ``calibration_split``, ``calibration_images``.

    Returns:
        A report dict: ``format``, ``output``, ``bytes`` and the format's details.
    """
    if format not in EXPORTERS:
        raise InputError(f"--format {format!r} is not supported; choose one of "
                         f"{', '.join(EXPORTERS)}")
    source = None if isinstance(checkpoint, Mapping) else Path(checkpoint).expanduser()
    if out is None:
        if source is None:
            raise InputError("pass the output file (out=...) for an in-memory checkpoint")
        out = (source if source.is_file() else source / "model").with_suffix("." + format)
    target = Path(out).expanduser()
    if target.is_dir():
        raise InputError(f"output {target} is a directory; pass a file such as "
                         f"{target / ('model.' + format)}")
    if source is not None:  # before anything is loaded or written
        inputs = [source] if model is not None or source.is_file() else [
            run_checkpoint(source)]
        check_outputs([target], inputs, force=force)
    if model is not None:
        if source is None:
            raise InputError("model= exports foreign weights from a file; pass its path")

        extra = dict(model_options or {})
        reserved = sorted(set(extra) & {"name", "num_classes", "weights"})
        if reserved:
            raise InputError(f"--option {reserved[0]}= is not a model option here: the "
                             "weights are SOURCE and the classes --num-classes; drop it")
        weights = read_state_file(source)  # read once: built from, and its options kept
        built = build_model(model, num_classes=num_classes, weights=weights, **extra)
        # The options read off the file (backbone, dilations, ...) go into the config too:
        # without them the exported file would rebuild another architecture.
        fitted, full = fit_foreign_options(weights, model, extra, num_classes=num_classes)
        config = {"name": model, "num_classes": fitted or num_classes, **full}
        checkpoint = dict(checkpoint_from_model(built, config), path=str(source))
    elif source is not None:
        checkpoint = load_checkpoint(run_checkpoint(source))
    report = EXPORTERS[format](checkpoint, target, **options)
    report["checkpoint"] = str(checkpoint.get("path", "<in memory>"))
    return report

