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
from fcnkit.models import build_model
from fcnkit.models.preprocess import Preprocessing, preprocessing_from
from fcnkit.outputs import check_outputs
from fcnkit.runtime.checkpoint import load_checkpoint, model_from_checkpoint, run_checkpoint
from fcnkit.schemas import EXPORT_METADATA, check_fields

__all__ = [
    "EXPORTERS",
    "ONNX_FORMAT",
    "DEFAULT_EXPORT_SIZE",
    "export_checkpoint",
    "export_format",
    "export_onnx",
    "decode_metadata",
    "onnx_metadata",
    "onnx_preprocessing",
    "read_onnx_metadata",
    "quantize_int8",
    "require",
]

#: Value of the ``fcnkit.format`` metadata entry of the ONNX files written here.
ONNX_FORMAT = "fcnkit-onnx/1"
#: Trace size (H, W) of the example input; with ``dynamic=True`` it is only an example.
DEFAULT_EXPORT_SIZE = (64, 96)
#: Where the metadata keys start (``fcnkit.mean`` ...).
_PREFIX = "fcnkit."


def input_convention(preprocessing: Preprocessing) -> str:
    """What the ONNX input expects, in words (stored as ``fcnkit.input``)."""
    order = ("" if preprocessing.channel_order == "RGB"
             else f", channels reordered to {preprocessing.channel_order}")
    scale = "" if preprocessing.scale == 1 else f", multiplied by {preprocessing.scale:g}"
    return (f"float32 NCHW, RGB pixel values in [0, 1]{order}{scale}, then normalised per "
            "channel: (x - mean) / std; output: logits NCHW at the input size, argmax over C "
            "gives class ids")


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


def onnx_metadata(ckpt: Mapping[str, Any]) -> dict[str, str]:
    """The ``metadata_props`` of an exported checkpoint: preprocessing, classes, palette.

    Values are JSON strings. The preprocessing is the checkpoint's own (its model config's
    ``preprocessing``; "imagenet" when it records none), the one the torch backend applies.
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
        "input": input_convention(preprocessing),
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
    props = {p.key[len(_PREFIX):]: p.value for p in model.metadata_props
             if p.key.startswith(_PREFIX)}
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
    check_fields(meta, EXPORT_METADATA, file=file, what="ONNX model",
                 fix="export the checkpoint again with fcnkit export")
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


# --- ONNX ----------------------------------------------------------------------------------


def export_onnx(
    model: nn.Module,
    out: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    dynamic: bool = True,
    opset: int | None = None,
    size: Sequence[int] = DEFAULT_EXPORT_SIZE,
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

    Returns:
        ``out`` as a Path. Raises InputError when the exporter rejects the model or opset.
    """
    require("onnxscript")
    onnx = require("onnx")
    model = _cpu_float_copy(model)
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
                opset_version=opset, input_names=["image"], output_names=["logits"],
                verbose=False, external_data=False,
            )
        except Exception as exc:  # the exporter wraps failures in several error types
            if opset is not None:
                raise InputError(f"--opset {opset} failed to export "
                                 f"({first_line(exc)[:160]}); try the default opset") from None
            raise
        program.save(str(raw))
        graph = onnx.load(str(raw))
        for key, value in (metadata or {}).items():
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
    if quantize not in (None, "int8"):
        raise InputError(f"--quantize {quantize!r} is not supported; pass int8")
    if quantize and not calibrate:
        raise InputError("--quantize int8 needs --calibrate DATA (a dataset to calibrate on)")
    if calibrate and not quantize:
        raise InputError("--calibrate is only used with --quantize int8; add --quantize int8")
    images = (calibration_images(calibrate, split=calibration_split, count=calibration_count)
              if quantize else None)  # read the data before the slow export
    model = model_from_checkpoint(ckpt)
    metadata = onnx_metadata(ckpt)
    report: dict[str, Any] = {"format": "onnx", "dynamic": bool(options.get("dynamic", True))}
    if quantize:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", metadata=metadata, **options)
            quantize_int8(fp32, out, images)
        report.update(quantize="int8", calibration_images=len(images))
    else:
        export_onnx(model, out, metadata=metadata, **options)
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
    ``"onnx"``."""
    if format is not None:
        return format
    suffix = Path(out).suffix.lower().lstrip(".") if out is not None else ""
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
            ``opset``, ``size``, ``quantize`` (``"int8"``), ``calibrate`` (dataset spec),
            ``calibration_split``, ``calibration_images``.

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
        built = build_model(model, num_classes=num_classes, weights=str(source), **extra)
        checkpoint = dict(checkpoint_from_model(
            built, {"name": model, "num_classes": num_classes, **extra}), path=str(source))
    elif source is not None:
        checkpoint = load_checkpoint(run_checkpoint(source))
    report = EXPORTERS[format](checkpoint, target, **options)
    report["checkpoint"] = str(checkpoint.get("path", "<in memory>"))
    return report

