"""Inference backends: one "logits for a batch" interface over torch and onnxruntime.

A backend is an ``nn.Module`` that maps a normalised float32 ``(N, 3, H, W)`` batch to
float32 logits ``(N, C, H, W)`` and has ``num_classes``, so everything that runs a model
(:func:`fcnkit.inference.evaluate.evaluate`, :func:`fcnkit.inference.predict.predict_paths`,
sliding windows) runs a backend unchanged:

* :class:`TorchBackend`: a PyTorch model with a precision (fp32 / bf16 / fp16 autocast,
  :mod:`fcnkit.runtime.precision`) and an optional channels_last layout. Logits come back
  as float32 whatever the compute dtype.
* :class:`OnnxRuntimeBackend`: an ONNX file written by ``fcnkit export`` run by
  onnxruntime on the CPU (``intra_op_num_threads`` = torch's thread count, thread spinning
  off so idle workers do not steal the cores the data loader needs). Its ``preprocessing``
  is what the file's metadata records (:func:`fcnkit.inference.export.onnx_preprocessing`).
  On a file exported with ``--onnx-output coarse`` the session returns the scores before
  the last upsampling; the backend rebuilds that upsampler from the metadata and exposes
  the coarse-score protocol (``coarse_scores``, ``final_upsampler``, ``final_offset``), so
  labels are computed exactly from the coarse scores
  (:func:`fcnkit.inference.labels.whole_image_labels`) while ``forward`` still returns the
  full logits.

:func:`open_backend` opens either from a checkpoint or an ``.onnx`` file and returns the
backend with the facts the caller needs (classes, palette, model config).

Example::

    from fcnkit.inference.backends import open_backend
    opened = open_backend("model.onnx", backend="onnxruntime")
    logits = opened.backend(images)          # (N, C, H, W) float32
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcnkit.atomic import check_regular_file
from fcnkit.errors import InputError, first_line, warn
from fcnkit.inference.argmax import channel_argmax
from fcnkit.inference.export import (
    ONNX_OUTPUTS,
    check_onnx_metadata,
    decode_metadata,
    export_onnx,
    final_upsampler_record,
    onnx_metadata,
    onnx_preprocessing,
    read_onnx_metadata,
    require,
    upsampler_from_record,
)
from fcnkit.inference.labels import labels_from_coarse, whole_image_labels
from fcnkit.models.heads import crop_to
from fcnkit.models.preprocess import Preprocessing, preprocessing_from
from fcnkit.runtime.checkpoint import load_checkpoint, model_from_checkpoint, run_checkpoint
from fcnkit.runtime.precision import (
    BACKENDS,
    Precision,
    autocast,
    resolve_channels_last,
    resolve_precision,
)

__all__ = ["BACKENDS", "TorchBackend", "OnnxRuntimeBackend", "OpenedBackend", "open_backend"]



class TorchBackend(nn.Module):
    """A PyTorch segmentation model run at a precision and memory layout.

    Args:
        model: maps ``(N, 3, H, W)`` to logits ``(N, C, H, W)`` (or ``{"out": logits}``).
        precision: a resolved :class:`~fcnkit.runtime.precision.Precision` or a name
            (``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"``) resolved for ``device``.
        channels_last: convert the model and every batch to channels_last (NHWC); ``"auto"``
            decides per device (:func:`~fcnkit.runtime.precision.resolve_channels_last`).
        device: where the model runs.
    """

    def __init__(self, model: nn.Module, *, precision: Precision | str = "fp32",
                 channels_last: bool | str = False, device: str | torch.device = "cpu"
                 ) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.channels_last = resolve_channels_last(channels_last, self.device)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # "auto" may time this model in both precisions (in the layout it will run in).
        self.precision = (precision if isinstance(precision, Precision)
                          else resolve_precision(precision, self.device, model=self.model,
                                                 channels_last=self.channels_last))
        self.num_classes = int(getattr(model, "num_classes", 0) or 0) or None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision, self.device):
            out = self.model(x)
        if isinstance(out, dict):
            out = out["out"]
        return out.float().contiguous()

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        """``self(x).argmax(1)``, without full-resolution logits when the model allows
        (:func:`fcnkit.inference.labels.whole_image_labels`)."""
        x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision, self.device):
            return whole_image_labels(self.model, x)

    def describe(self) -> str:
        layout = "channels_last" if self.channels_last else "NCHW"
        return f"torch {self.precision.name} {layout} on {self.device}"


class OnnxRuntimeBackend(nn.Module):
    """An ONNX segmentation model run by onnxruntime's CPU execution provider.

    Args:
        path: ``.onnx`` file (input: normalised float32 NCHW; output: logits NCHW, or
            coarse scores when the file was exported with ``--onnx-output coarse``).
        threads: intra-op threads (``None``: ``torch.get_num_threads()``).
        spinning: let idle worker threads spin (onnxruntime's default); off by default so
            they do not compete with data-loading processes for the same cores.
        num_classes: the logits' channel count (``None``: read from the graph's output).

    Attributes:
        preprocessing: the normalisation the file's fcnkit metadata records
            (``fcnkit.preprocessing``; ImageNet for a file without it); the callers
            normalise images with it, as they do for a torch model's ``preprocessing``.
        coarse: True when the graph outputs ``coarse_scores``. Only then the backend also
            has ``final_upsampler`` (rebuilt on the CPU from ``fcnkit.final_upsampler``)
            and ``final_offset`` (``fcnkit.final_offset``), which with
            :meth:`coarse_scores` make the coarse-score protocol of fcnkit's FCNs.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None,
                 spinning: bool = False, num_classes: int | None = None) -> None:
        super().__init__()

        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spin = "1" if spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        check_regular_file(path, "ONNX model")  # a FIFO would block onnxruntime forever
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise InputError(f"onnxruntime cannot load {path} ({first_line(exc)[:160]}); pass "
                             "a model written by fcnkit export") from None
        self.path = str(path)
        self.input_name = self.session.get_inputs()[0].name
        # A file exported without --dynamic fixes some input sizes (batch 1 at --size).
        self.input_shape = tuple(d if isinstance(d, int) else None
                                 for d in self.session.get_inputs()[0].shape)
        out_shape = self.session.get_outputs()[0].shape
        declared = out_shape[1] if len(out_shape) > 1 and isinstance(out_shape[1], int) else None
        if num_classes is not None and declared is not None and declared != num_classes:
            # The metadata's word against the graph's: labels up to declared-1 would be
            # written for a model said to have num_classes classes.
            raise InputError(f"ONNX model {path} outputs {declared} channels, but its metadata "
                             f"declares num_classes={num_classes}; export the checkpoint again")
        self.num_classes = num_classes or declared
        props = self.session.get_modelmeta().custom_metadata_map
        meta = decode_metadata(props)
        self.preprocessing = onnx_preprocessing(meta)
        output_name = self.session.get_outputs()[0].name
        self.coarse = output_name == ONNX_OUTPUTS["coarse"] or "fcnkit.output" in props
        if self.coarse:
            self._open_coarse(check_onnx_metadata(props, path), output_name)

    def _open_coarse(self, meta: Mapping[str, Any], output_name: str) -> None:
        """Check that graph and metadata agree on a coarse output, rebuild the upsampler."""
        if (meta.get("output") == "coarse") != (output_name == ONNX_OUTPUTS["coarse"]):
            said = meta.get("output", "logits")
            raise InputError(f"ONNX model {self.path} outputs {output_name!r} but its metadata "
                             f"says fcnkit.output={said!r}; export the checkpoint again")
        if meta.get("output") != "coarse":  # a logits file that records its output
            self.coarse = False
            return
        if self.num_classes is None:
            raise InputError(f"ONNX model {self.path} declares no class count; export the "
                             "checkpoint again")
        self.final_upsampler = upsampler_from_record(meta["final_upsampler"],
                                                     self.num_classes)
        self.final_offset = (int(meta["final_offset"][0]), int(meta["final_offset"][1]))

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """The graph's output for ``x`` on the CPU, its channel count checked."""
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        self._check_input_shape(array.shape)
        (out,) = self.session.run(None, {self.input_name: array})
        if self.num_classes is not None and (out.ndim != 4
                                             or out.shape[1] != self.num_classes):
            what = "coarse scores" if self.coarse else "logits"
            raise InputError(f"ONNX model {self.path} output {what} of shape "
                             f"{tuple(out.shape)}, expected {self.num_classes} channels "
                             "(its metadata's num_classes); export the checkpoint again")
        return torch.from_numpy(out)

    def _check_input_shape(self, shape: tuple[int, ...]) -> None:
        """InputError when a batch does not fit the graph's fixed input sizes."""
        fixed = self.input_shape
        if len(fixed) == len(shape) and all(d is None or d == n for d, n in zip(fixed, shape)):
            return
        wanted = "x".join("N" if d is None else str(d) for d in fixed)
        raise InputError(f"ONNX model {self.path} takes a fixed input of {wanted} (exported "
                         f"without --dynamic), got {'x'.join(map(str, shape))}; export the "
                         "checkpoint again with fcnkit export --dynamic")

    def coarse_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The graph's ``coarse_scores`` ``(N, C, h, w)`` on the CPU (a coarse file only)."""
        if not self.coarse:
            raise ValueError(f"{self.path} outputs logits, not coarse scores")
        return self._run(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C, H, W)`` on ``x``'s device; for a coarse file the rebuilt
        upsampler and crop run in torch on the CPU, as the fcnkit model's own forward
        (``crop_to(final_upsampler(coarse_scores(x)), final_offset, (H, W))``)."""
        if not self.coarse:
            return self._run(x).to(x.device)
        with torch.no_grad():
            logits = crop_to(self.final_upsampler(self._run(x)), self.final_offset,
                             x.shape[-2:])
        return logits.contiguous().to(x.device)

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        """``self(x).argmax(1)`` (on the CPU); for a coarse file computed from the coarse
        scores as for a torch model (:func:`fcnkit.inference.labels.labels_from_coarse`:
        whole cells from the scores on large calm maps, else the whole map's last
        upsampling or strips), bit for bit the same."""
        if self.coarse:
            with torch.no_grad():
                return labels_from_coarse(self, self.coarse_scores(x), x.shape[-2:])
        return channel_argmax(self._run(x))

    def describe(self) -> str:
        threads = self.session.get_session_options().intra_op_num_threads
        output = ", labels from coarse scores" if self.coarse else ""
        return f"onnxruntime CPU ({threads} threads{output}) {Path(self.path).name}"


@dataclass
class OpenedBackend:
    """What :func:`open_backend` returns: the backend and the model's facts.

    ``classes`` and ``palette`` may be empty (the checkpoint or file did not store them);
    ``source`` is the file the model was read from. ``preprocessing`` is the normalisation
    the weights expect: an onnxruntime backend's own (its file's metadata), else the model
    config's (ImageNet when it records none).
    """

    backend: nn.Module
    num_classes: int
    classes: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)
    model_config: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    preprocessing: Preprocessing = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.backend, OnnxRuntimeBackend):
            self.preprocessing = self.backend.preprocessing
        else:
            self.preprocessing = preprocessing_from(self.model_config.get("preprocessing"))
        # The backend carries the normalisation its weights expect, as a model does
        # (fcnkit.models.preprocess.model_preprocessing reads it).
        self.backend.preprocessing = self.preprocessing


def read_source(source: str | os.PathLike[str]) -> str | os.PathLike[str] | dict[str, Any]:
    """What :func:`open_backend` should open: an ``.onnx`` path as it is, else the checkpoint
    dict (a run directory gives its best.pt, else last.pt), so callers can read its facts
    (preprocessing, classes) before opening the backend without loading it twice."""
    if is_onnx_file(source):
        return source

    return load_checkpoint(run_checkpoint(source))


def source_preprocessing(source: str | os.PathLike[str] | Mapping[str, Any]) -> Preprocessing:
    """The normalisation a checkpoint dict's or an exported ``.onnx`` model's weights expect."""
    if isinstance(source, Mapping):
        return preprocessing_from((source.get("model_config") or {}).get("preprocessing"))
    return onnx_preprocessing(read_onnx_metadata(source))


def is_onnx_file(path: str | os.PathLike[str]) -> bool:
    """True for a path ending in ``.onnx`` (how the commands tell a model file apart)."""
    return Path(path).suffix.lower() == ".onnx"


def open_backend(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    channels_last: bool | str = False,
    threads: int | None = None,
    num_classes: int | None = None,
) -> OpenedBackend:
    """Open a checkpoint (dict or file) or an ``.onnx`` file as an inference backend.

    Args:
        source: a checkpoint dict from :func:`fcnkit.runtime.checkpoint.load_checkpoint`, a
            checkpoint file or run directory (its best.pt, else last.pt), or an ``.onnx``
            file from ``fcnkit export``.
        backend: ``"torch"`` (checkpoints only), ``"onnxruntime"`` (an ``.onnx`` file, or
            a checkpoint, which is exported to a temporary dynamic-size ONNX file first:
            with the coarse output when the model's last upsampling is bilinear), or
            ``"auto"``: onnxruntime for an ``.onnx`` file, torch for a checkpoint.
        device, precision, channels_last: for the torch backend.
        threads: onnxruntime intra-op threads (``None``: torch's thread count).
        num_classes: the class count the caller's data has; a model with another count is
            an :class:`InputError`.

    Returns:
        An :class:`OpenedBackend`.
    """
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend!r} is unknown; choose one of {', '.join(BACKENDS)}")
    onnx_file = not isinstance(source, Mapping) and is_onnx_file(source)
    if backend == "auto":
        backend = "onnxruntime" if onnx_file else "torch"
    if backend == "onnxruntime" and (precision in ("bf16", "fp16") or channels_last is True
                                     or channels_last == "on"):
        # Asked for explicitly (the defaults are fp32 / auto): say it has no effect here.
        warn("--precision and --channels-last apply to the torch backend; onnxruntime runs "
             "the graph as exported (float32, or int8 for a quantized file)")
    if onnx_file:
        if backend != "onnxruntime":
            raise InputError(f"{source} is an ONNX model; run it with --backend onnxruntime "
                             "or pass a checkpoint for --backend torch")
        return _open_onnx(source, threads=threads, num_classes=num_classes)

    ckpt = source if isinstance(source, Mapping) else load_checkpoint(run_checkpoint(source))
    model = model_from_checkpoint(ckpt, num_classes=num_classes, device=device)
    classes = list(ckpt.get("classes") or [])
    palette = [list(map(int, c)) for c in (ckpt.get("palette") or [])]
    config = dict(ckpt["model_config"])
    count = int(config.get("num_classes") or len(classes))
    where = str(ckpt.get("path", "<in memory>"))
    if backend == "torch":
        runner = TorchBackend(model, precision=precision, channels_last=channels_last,
                              device=device)
        return OpenedBackend(runner, count, classes, palette, config, where)

    # The graph stops at the coarse scores when labels can be computed exactly from them.
    try:
        final_upsampler_record(model)
        output = "coarse"
    except InputError:
        output = "logits"
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", output=output,
                           metadata=onnx_metadata(ckpt, output=output))
        runner = OnnxRuntimeBackend(path, threads=threads, num_classes=count)
    return OpenedBackend(runner, count, classes, palette, config, where)


def _open_onnx(path: str | os.PathLike[str], *, threads: int | None,
               num_classes: int | None) -> OpenedBackend:
    meta = read_onnx_metadata(path)
    config = dict(meta.get("model_config") or {})
    classes = list(meta.get("classes") or [])
    count = int(config.get("num_classes") or len(classes))
    if num_classes is not None and count != num_classes:
        raise InputError(f"ONNX model {path} predicts {count} classes, but the data has "
                         f"{num_classes}; export a checkpoint trained on this dataset")
    runner = OnnxRuntimeBackend(path, threads=threads, num_classes=count)
    return OpenedBackend(runner, count, classes, list(meta.get("palette") or []), config,
                         str(path))
