"""Trace an ``nn.Module`` into receptive-field records.

:func:`receptive_field_of` runs one forward pass (batch 1, ``torch.no_grad``, eval mode)
under a :class:`torch.overrides.TorchFunctionMode` that sees every torch operation, so it
follows Python control flow, functional calls (``F.interpolate``, ``x + y``, crops by
slicing, ``F.pad``) and modules alike -- no ``torch.fx`` tracing restrictions. Every tensor
derived from the input carries its receptive field (:class:`fcnkit.arith.ReceptiveField`,
exact fractions, PyTorch semantics) and the rules are:

* convolutions, transposed convolutions, max/avg/LP pooling: their geometry
  (:func:`fcnkit.arith.receptive_field` conventions, any kernel/stride/padding/dilation);
* element-wise operations and anything that keeps the spatial shape (ReLU, BatchNorm,
  dropout, channel concatenation): unchanged;
* merges of several tensors (residual ``+``, ``*``, ``torch.cat``): the union of the
  branches' footprints, Araujo et al. 2019 (branches must share the effective stride);
* slicing on spatial axes (crops, ``[..., ::2]``) and ``F.pad``: shifts / strides;
* ``F.interpolate``: a fractional-stride layer whose bounds contain every input pixel
  an output reads (nearest, nearest-exact, (bi/tri)linear, bicubic, area);
* adaptive pooling: exact pooling when the bins are even; global pooling (output 1 per
  spatial axis) makes the field **the whole input** (``whole_input=True``; ``size`` is then
  the input size and ``field`` keeps the local part, e.g. the convolutional path of a
  squeeze-and-excitation block, or None);
* any other op that changes the spatial layout (flatten, reductions): whole input, with a
  ``note`` naming the op. Reshapes that keep the spatial axes last (channel shuffles) pass
  through, and permutes / transposes are followed (ConvNeXt's channels-last LayerNorm and
  Linear layers); reshapes that move the spatial axes (Swin's windows) are flagged.

The resampling geometry (``F.interpolate``, adaptive pooling) is
:mod:`fcnkit.arith.resample`'s; this module only reads the op's arguments.

Each op family has a small handler in :data:`_HANDLERS` that reads the op's geometry
from its arguments; ops without one pass the field through or merge branches.
"""

from __future__ import annotations

import re
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

from fcnkit.arith import adaptive_pool_equivalent, interpolate_equivalent
from fcnkit.arith.receptive import ReceptiveField, merge_receptive_fields
from fcnkit.errors import InputError
from fcnkit.models import build_model, list_models

__all__ = ["LayerRecord", "conv_body_records", "model_for_analysis", "receptive_field_of"]


@dataclass(frozen=True)
class _Info:
    field: ReceptiveField | None  # local receptive field (None: only global context left)
    whole: bool = False  # depends on the whole input (global pooling, flatten, ...)
    note: str = ""
    axes: tuple[int, ...] = ()  # spatial axes as negative indices; () = the last ones

    def same_field(self, other: _Info | None) -> bool:
        return other is not None and (self.field, self.whole, self.note) == (
            other.field, other.whole, other.note)


@dataclass
class LayerRecord:
    """The receptive field of one layer's output (see :func:`receptive_field_of`).

    Attributes:
        name: module path (``features.30``) or ``<module path>.<op>`` for functional ops
            (``layer1.0.add``); ``output`` for the model's output.
        kind: module class name or op name.
        shape: output tensor shape, e.g. (1, 512, 7, 7).
        field: local receptive field (per spatial dimension), or None.
        whole_input: True when the output depends on the whole input (global pooling...).
        input_size: the traced input's spatial size.
        note: why the field is whole / approximate, empty otherwise.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    field: ReceptiveField | None
    whole_input: bool
    input_size: tuple[int, ...]
    note: str = ""

    @property
    def size(self) -> Any:
        """Receptive-field size per dimension (the input size when ``whole_input``)."""
        if self.whole_input or self.field is None:
            return self.input_size
        return self.field.size

    @property
    def stride(self) -> Any:
        """Effective stride per dimension (None without a local field)."""
        return None if self.field is None else self.field.stride

    @property
    def padding(self) -> Any:
        """Effective padding per dimension (None without a local field)."""
        return None if self.field is None else self.field.padding

    def center(self, index: int | Sequence[int] = 0) -> Any:
        """Input coordinate of the centre of output pixel ``index`` (None without a field)."""
        return None if self.field is None else self.field.center(index)

    def bounds(self, index: int | Sequence[int] = 0) -> Any:
        """(first, last) input coordinates of output pixel ``index`` per dimension (None
        without a local field); see :meth:`fcnkit.arith.ReceptiveField.bounds`."""
        return None if self.field is None else self.field.bounds(index)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict: name, kind, shape, size, stride, padding, center, whole_input,
        note, and ``local`` (the local field) when ``whole_input``."""
        local = self.field.as_dict() if self.field is not None else None
        out = {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "size": list(self.input_size) if self.whole_input or local is None
            else local["size"],
            "stride": None if local is None else local["stride"],
            "padding": None if local is None else local["padding"],
            "center": None if local is None else local["center"],
            "whole_input": self.whole_input,
            "note": self.note,
        }
        if self.whole_input:
            out["local"] = local
        return out


# ---------------------------------------------------------------------------------------
# argument helpers


def _arg(args: Sequence[Any], kwargs: dict[str, Any], pos: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    if len(args) > pos:
        return args[pos]
    return default


def _tuple(value: Any, nd: int) -> tuple[Any, ...]:
    if isinstance(value, (list, tuple)):
        values = tuple(value)
        if len(values) == 1:
            return values * nd
        return values
    return (value,) * nd


def _flatten(obj: Any) -> list[Any]:
    if isinstance(obj, (list, tuple)):
        return [x for item in obj for x in _flatten(item)]
    if isinstance(obj, dict):
        return [x for item in obj.values() for x in _flatten(item)]
    return [obj]


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", type(func).__name__)
    return name.strip("_").rstrip("_") or name


# Reductions that, over the spatial axes, are global pooling (x.mean([2, 3]), ...).
_REDUCTIONS = frozenset({"mean", "sum", "amax", "amin", "max", "min", "logsumexp", "std",
                         "var", "norm"})


# ---------------------------------------------------------------------------------------
# the tracer


class _Tracer:
    def __init__(self, spatial: tuple[int, ...]):
        self.spatial = spatial
        self.nd = len(spatial)
        self.info: dict[int, _Info] = {}
        self.stack: list[tuple[str, bool]] = []  # (module name, is leaf)
        self.records: list[LayerRecord] = []
        self.names: dict[str, int] = {}
        self.pending: list[_Info | None] = []

    # -- bookkeeping -------------------------------------------------------------------
    def set(self, tensor: Any, info: _Info) -> None:
        # Keyed by id(); the entry is dropped when the tensor is freed, so a later tensor
        # reusing the id never inherits it (and activations are not kept alive).
        key = id(tensor)
        if key not in self.info:
            weakref.finalize(tensor, self.info.pop, key, None)
        self.info[key] = info

    def get(self, tensor: Any) -> _Info | None:
        return self.info.get(id(tensor))

    def record(self, name: str, kind: str, tensor: Any, info: _Info) -> None:
        count = self.names.get(name, 0)
        self.names[name] = count + 1
        unique = name if count == 0 else f"{name}#{count + 1}"
        self.records.append(LayerRecord(
            unique, kind, tuple(tensor.shape), info.field, info.whole, self.spatial, info.note,
        ))

    def spatial_of(self, tensor: Any, axes: tuple[int, ...] = ()) -> tuple[int, ...] | None:
        """The spatial sizes of ``tensor``: by default its last axes ((N, C, H, W), or any
        layout that keeps them last, such as a channel shuffle's (N, g, C/g, H, W));
        ``axes`` (negative indices) follows permutes, e.g. channels-last (N, H, W, C)."""
        axes = axes or tuple(range(-self.nd, 0))
        if tensor.dim() < self.nd + 1 or any(a < -tensor.dim() for a in axes):
            return None
        return tuple(tensor.shape[a] for a in axes)

    def out_axes(self, name: str, args: tuple, kwargs: dict, x: Any, axes: tuple[int, ...],
                 out: Any) -> tuple[int, ...]:
        """Where the spatial axes of ``x`` end up in ``out`` (negative indices, () = last)."""
        axes = axes or tuple(range(-self.nd, 0))
        ndim = x.dim()
        positive = [a % ndim for a in axes]
        if name == "permute" and out.dim() == ndim:
            dims = _flatten(list(args[1:]) or kwargs.get("dims", []))
            order = [int(d) % ndim for d in dims]
            if sorted(order) == list(range(ndim)):
                new = tuple(order.index(a) - ndim for a in positive)
                return () if new == tuple(range(-self.nd, 0)) else new
        if name in ("transpose", "swapaxes", "swapdims") and out.dim() == ndim:
            d0 = int(_arg(args, kwargs, 1, "dim0", 0)) % ndim
            d1 = int(_arg(args, kwargs, 2, "dim1", 0)) % ndim
            swap = {d0: d1, d1: d0}
            new = tuple(swap.get(a, a) - ndim for a in positive)
            return () if new == tuple(range(-self.nd, 0)) else new
        if out.dim() == ndim:
            return () if tuple(axes) == tuple(range(-self.nd, 0)) else tuple(axes)
        return ()

    # -- one torch op --------------------------------------------------------------------
    def on_op(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        flat_in = [t for t in _flatten((args, kwargs)) if isinstance(t, torch.Tensor)]
        tracked = [t for t in flat_in if id(t) in self.info]
        if not tracked:
            return
        outs = [t for t in _flatten(out) if isinstance(t, torch.Tensor)]
        if not outs:
            return
        name = _op_name(func)
        x = args[0] if args and isinstance(args[0], torch.Tensor) and id(args[0]) in self.info \
            else tracked[0]
        src = self.info[id(x)]
        new, merged = self.transfer(name, func, x, src, tracked, args, kwargs, outs[0])
        for t in outs:
            self.set(t, new)
        # Functional ops outside leaf modules get their own records when they matter.
        inside_leaf = bool(self.stack) and self.stack[-1][1]
        if not inside_leaf and (merged or not new.same_field(src)):
            prefix = self.stack[-1][0] if self.stack else ""
            self.record(f"{prefix}.{name}" if prefix else name, name, outs[0], new)

    def transfer(self, name: str, func: Any, x: Any, src: _Info, tracked: list[Any],
                 args: tuple, kwargs: dict, out: Any) -> tuple[_Info, bool]:
        """The field of ``out`` from the op's inputs, and whether it merged branches.

        An op with a handler in :data:`_HANDLERS` maps the field through its geometry;
        any other op passes it through, or takes the union of its branches
        (:meth:`pass_or_merge`).
        """
        in_sp = self.spatial_of(x, src.axes)
        if in_sp is None:
            return src, False
        axes = self.out_axes(name, args, kwargs, x, src.axes, out)
        op = _Op(name, args, kwargs, x, src, self.nd, in_sp, self.spatial_of(out, axes))
        handler = _HANDLERS.get(re.sub(r"[123]d", "", name))  # conv2d -> conv, ...
        step = handler(self, op) if handler is not None else None
        if isinstance(step, _Info):
            return step, False
        if step is None:
            return self.pass_or_merge(op, tracked, axes)
        geometry, note = step
        keep = axes if name == "getitem" else ()  # slicing keeps the layout
        if src.field is None:
            return _Info(None, src.whole, note, keep), False
        if isinstance(geometry, dict):
            new_field = src.field.then(geometry, where=name)
        else:
            new_field = src.field.then_equivalent(*geometry)
        return _Info(new_field, src.whole, note, keep), False

    def pass_or_merge(self, op: _Op, tracked: list[Any],
                      axes: tuple[int, ...]) -> tuple[_Info, bool]:
        """Element-wise / shape-keeping ops pass the field through; merges (``+``,
        ``torch.cat``) take the union of the branches' fields; anything that changes
        the spatial layout makes the field the whole input."""
        name, in_sp, out_sp = op.name, op.in_sp, op.out_sp
        if out_sp is None or out_sp != in_sp:
            same = [t for t in tracked
                    if self.spatial_of(t, self.info[id(t)].axes) == out_sp] if out_sp else []
            if not same:
                if name in _REDUCTIONS:
                    return _Info(None, True, f"global pooling ({name})"), False
                return _Info(op.src.field, True, f"{name} changes the spatial layout"), False
        parts = [self.info[id(t)] for t in tracked]
        whole = any(p.whole for p in parts)
        notes = [p.note for p in parts if p.note]
        fields = [p.field for p, t in zip(parts, tracked)
                  if p.field is not None and self.spatial_of(t, p.axes) == out_sp]
        merged = len(tracked) > 1 and len({id(t) for t in tracked}) > 1
        if not fields:
            return _Info(None, whole, notes[0] if notes else "", axes), merged
        try:
            new_field = merge_receptive_fields(fields) if len(fields) > 1 else fields[0]
        except InputError:
            return _Info(fields[0], True, f"{name}: branches on different grids", axes), merged
        return _Info(new_field, whole, notes[0] if notes else "", axes), merged

    def slice_equivalent(self, x: Any, index: Any, axes: tuple[int, ...] = ()) -> tuple | None:
        """(k', s', p') of basic slicing on the spatial axes; None when not plain slicing."""
        nd = self.nd
        idx = index if isinstance(index, tuple) else (index,)
        if any(not (isinstance(i, slice) or i is Ellipsis) for i in idx):
            return None
        if Ellipsis in idx:
            pos = idx.index(Ellipsis)
            fill = x.dim() - (len(idx) - 1)
            idx = idx[:pos] + (slice(None),) * fill + idx[pos + 1:]
        idx = idx + (slice(None),) * (x.dim() - len(idx))
        starts, steps = [], []
        for a in axes or range(-nd, 0):
            start, _, step = idx[a].indices(x.shape[a])
            starts.append(-start)
            steps.append(step)
        # a crop that keeps the start (stop < size) is the identity map on coordinates
        return (1,) * nd, tuple(steps), tuple(starts)


# ---------------------------------------------------------------------------------------
# one handler per op family: the op's geometry from its arguments


@dataclass(frozen=True)
class _Op:
    """One traced torch op, as its handler sees it."""

    name: str
    args: tuple
    kwargs: dict
    x: Any  # the tracked input the geometry applies to
    src: _Info  # its field
    nd: int  # spatial dimensions
    in_sp: tuple[int, ...]  # spatial size in
    out_sp: tuple[int, ...] | None  # spatial size out (None: the layout changed)

    def arg(self, pos: int, name: str, default: Any) -> Any:
        return _arg(self.args, self.kwargs, pos, name, default)


#: What a handler returns: a finished field (_Info), the op's geometry with the note
#: to keep (a layer dict for ReceptiveField.then, or (k, s, p) per dimension for
#: then_equivalent), or None for "no geometry: pass through or merge".
_Step = _Info | tuple[Any, str] | None


def _convolution(tracer: _Tracer, op: _Op) -> _Step:
    # conv(input, weight, bias, stride, padding, dilation, groups);
    # conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation)
    transposed = op.name.startswith("conv_transpose")
    kernel = tuple(op.arg(1, "weight", None).shape[2:])
    padding = op.arg(4, "padding", 0)
    dilation = op.arg(7 if transposed else 5, "dilation", 1)
    return {"kernel": kernel, "stride": _tuple(op.arg(3, "stride", 1), op.nd),
            "padding": padding if isinstance(padding, str) else _tuple(padding, op.nd),
            "dilation": _tuple(dilation, op.nd), "transposed": transposed}, op.src.note


def _pooling(tracer: _Tracer, op: _Op) -> _Step:
    if op.name.startswith("lp_pool"):
        kernel = op.arg(2, "kernel_size", 1)
        stride, padding, dilation = op.arg(3, "stride", None), 0, 1
    else:
        kernel = op.arg(1, "kernel_size", 1)
        stride = op.arg(2, "stride", None)
        padding = op.arg(3, "padding", 0)
        dilation = op.arg(4, "dilation", 1) if op.name.startswith("max") else 1
    kernel = _tuple(kernel, op.nd)
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        stride = kernel
    return {"kernel": kernel, "stride": _tuple(stride, op.nd),
            "padding": _tuple(padding, op.nd), "dilation": _tuple(dilation, op.nd)}, op.src.note


def _adaptive_pooling(tracer: _Tracer, op: _Op) -> _Step:
    """Adaptive pooling and ``F.interpolate(mode="area")``: exact pooling when the bins
    are even (:func:`fcnkit.arith.adaptive_pool_equivalent`), global pooling at size 1."""
    if op.out_sp is None:
        return _Info(op.src.field, True, f"{op.name} changes the layout")
    if all(o == 1 for o in op.out_sp) and any(i > 1 for i in op.in_sp):
        return _Info(None, True, f"global pooling ({op.name})")
    eqs = [adaptive_pool_equivalent(i, o) for i, o in zip(op.in_sp, op.out_sp)]
    note = op.src.note
    if not all(exact for _, exact in eqs):
        note = f"{op.name}: uneven bins, field is an upper bound"
    return tuple(zip(*(eq for eq, _ in eqs))), note


def _interpolate(tracer: _Tracer, op: _Op) -> _Step:
    mode = op.arg(3, "mode", "nearest")
    if mode == "area":
        return _adaptive_pooling(tracer, op)
    align = op.arg(4, "align_corners", None)
    scale = op.arg(2, "scale_factor", None)
    if op.arg(5, "recompute_scale_factor", None):
        scale = None
    scales = _tuple(scale, op.nd) if scale is not None else (None,) * op.nd
    eqs = [interpolate_equivalent(mode, align, i, o, s)
           for i, o, s in zip(op.in_sp, op.out_sp, scales)]
    return tuple(zip(*eqs)), op.src.note


def _getitem(tracer: _Tracer, op: _Op) -> _Step:
    geometry = tracer.slice_equivalent(op.x, op.args[1] if len(op.args) > 1 else None,
                                       op.src.axes)
    if geometry is not None:
        return geometry, op.src.note
    if op.out_sp == op.in_sp:
        return op.src
    return _Info(op.src.field, True, "indexing that changes the spatial layout")


def _pad(tracer: _Tracer, op: _Op) -> _Step:
    nd = op.nd
    pad = list(op.arg(1, "pad", ()))
    pad += [0] * (2 * nd - len(pad))
    # pad lists (left, right) pairs from the last dimension backwards
    lefts = [pad[2 * (nd - 1 - d)] for d in range(nd)]
    return ((1,) * nd, (1,) * nd, tuple(lefts)), op.src.note


#: Op name (with the 1d/2d/3d suffix removed) -> its handler.
_HANDLERS: dict[str, Callable[[_Tracer, _Op], _Step]] = {
    "conv": _convolution,
    "conv_transpose": _convolution,
    "max_pool": _pooling,
    "max_pool_with_indices": _pooling,
    "avg_pool": _pooling,
    "lp_pool": _pooling,
    "adaptive_avg_pool": _adaptive_pooling,
    "adaptive_max_pool": _adaptive_pooling,
    "interpolate": _interpolate,
    "getitem": _getitem,
    "pad": _pad,
}


class _ReceptiveFieldMode(TorchFunctionMode):
    """Sees every torch op of the forward pass and hands it to the tracer."""

    def __init__(self, tracer: _Tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.tracer.on_op(func, args, kwargs, out)
        return out


def _input_channels(model: Any) -> int:
    for module in model.modules():
        channels = getattr(module, "in_channels", None)
        if isinstance(channels, int):
            return channels
    return 3


def receptive_field_of(
    model: Any, input_size: int | Sequence[int] = 224, in_channels: int | None = None
) -> list[LayerRecord]:
    """Receptive field of every layer of ``model`` by tracing one forward pass.

    Args:
        model: an ``nn.Module`` taking one (N, C, *spatial) tensor; it may return a tensor,
            a tuple/list or a dict of tensors (all are reported; ``"out"`` last if present).
        input_size: spatial size, an int (square) or one int per spatial dimension.
        in_channels: input channels; default: the first module with ``in_channels``, else 3.

    Returns:
        One :class:`LayerRecord` per convolution / pooling module and per other layer or
        op that changes the receptive field (resampling, crops, merges; element-wise
        layers are folded into them), in execution order, then one record per model
        output (name ``output`` or ``output[key]``): the last record is the model's output.

    Raises:
        InputError: for a bad ``input_size``, a model that fails on that input (e.g. too
            small for its pooling), or a model whose output does not depend on the input.
    """
    sizes = (input_size,) * 2 if isinstance(input_size, int) else tuple(input_size)
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise InputError(f"input_size must be positive integers like 224 or 375,500, got "
                         f"{input_size!r}")
    tracer = _Tracer(sizes)
    # On the model's device: a model built on the meta device is traced without weights
    # or arithmetic (the geometry needs neither).
    # In the model's floating dtype too (a float64 model refuses a float32 input).
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                 torch.get_default_dtype())
    x = torch.zeros(1, in_channels or _input_channels(model), *sizes, device=device,
                    dtype=dtype)
    tracer.set(x, _Info(ReceptiveField.identity(len(sizes))))
    output = _traced_forward(model, x, tracer)
    found = False
    for name, value in _named_outputs(output):
        info = tracer.get(value) if isinstance(value, torch.Tensor) else None
        if info is None:
            continue
        found = True
        tracer.records.append(LayerRecord(name, type(model).__name__, tuple(value.shape),
                                          info.field, info.whole, sizes, info.note))
    if not found:
        raise InputError(f"{type(model).__name__}: no output tensor depends on the input; "
                         "pass a model that maps an image tensor to feature maps")
    return tracer.records


def _hook_modules(model: Any, tracer: _Tracer) -> list[Any]:
    """Forward hooks that keep the tracer's module stack and record every leaf layer that
    changes the field (every conv / pool layer gets a row); returns the handles."""
    handles = []
    for name, module in model.named_modules():
        leaf = next(module.children(), None) is None

        def pre(mod, inputs, name=name, leaf=leaf):
            tracer.stack.append((name, leaf))
            first = next((t for t in _flatten(inputs) if isinstance(t, torch.Tensor)), None)
            tracer.pending.append(tracer.get(first) if first is not None else None)

        def post(mod, inputs, output, name=name, leaf=leaf):
            tracer.stack.pop()
            before = tracer.pending.pop()
            if not leaf or not name:
                return
            first = next((t for t in _flatten(output) if isinstance(t, torch.Tensor)), None)
            info = tracer.get(first) if first is not None else None
            # every conv / pool layer gets a row; other leaves only when they change the field
            if info is not None and (not info.same_field(before)
                                     or hasattr(mod, "kernel_size")):
                tracer.record(name, type(mod).__name__, first, info)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    return handles


def _traced_forward(model: Any, x: Any, tracer: _Tracer) -> Any:
    """``model(x)`` in eval mode under the tracer's hooks and torch-function mode (the
    model's mode and hooks are restored); a model that fails on ``x`` is an InputError."""
    handles = _hook_modules(model, tracer)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), _ReceptiveFieldMode(tracer):
            try:
                return model(x)
            except (RuntimeError, AssertionError, ValueError) as exc:
                if isinstance(exc, InputError):
                    raise
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise InputError(
                    f"{type(model).__name__} cannot run on a {tuple(x.shape)} input ({first}); "
                    "try another input size"
                ) from exc
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def _named_outputs(output: Any) -> list[tuple[str, Any]]:
    """A model's outputs with their record names (a dict's ``"out"`` last)."""
    if isinstance(output, dict):
        items = [(f"output[{k}]", v) for k, v in output.items() if k != "out"]
        if "out" in output:
            items.append(("output[out]", output["out"]))
        return items
    if isinstance(output, (list, tuple)):
        return [(f"output[{i}]", v) for i, v in enumerate(output)]
    return [("output", output)]


def model_for_analysis(name: str, num_classes: int = 21) -> Any:
    """Build a model by name for receptive-field analysis (random weights, no download).

    Args:
        name: an fcnkit model (``fcnkit.models.list_models()``, built with ``num_classes``)
            or a torchvision classification model (``vgg16``, ``resnet50``, ``alexnet``,
            ``mobilenet_v3_large``, ...), of which only the convolutional body is kept:
            ``features`` when the model has it; otherwise the whole classifier is returned
            with the attribute ``fcnkit_conv_body_only = True``, and the caller cuts its
            records with :func:`conv_body_records` (ResNet, ResNeXt, RegNet, GoogLeNet,
            ShuffleNet...).

    Returns:
        An ``nn.Module`` in eval mode.

    Raises:
        InputError: for an unknown name (the message lists where names come from).
    """
    key = name.strip().lower()
    if key in list_models():
        return build_model(key, num_classes=num_classes).eval()
    tv_names = torchvision.models.list_models(module=torchvision.models)
    if key not in tv_names:
        raise InputError(
            f"unknown model {name!r}: use an fcnkit model ({', '.join(list_models())}) or a "
            "torchvision classifier such as vgg16, resnet50, alexnet, mobilenet_v3_large"
        )
    vgg = torchvision.models.vgg
    cfg_of = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
    if key.removesuffix("_bn") in cfg_of:
        # torchvision's own VGG body builder: skips the 100M-parameter classifier
        body = vgg.make_layers(vgg.cfgs[cfg_of[key.removesuffix("_bn")]],
                               batch_norm=key.endswith("_bn"))
        return nn.Sequential(OrderedDict(features=body)).eval()
    with warnings.catch_warnings():
        # e.g. GoogLeNet/Inception warn about their future default init: not the user's fault
        warnings.simplefilter("ignore", FutureWarning)
        model = torchvision.models.get_model(key, weights=None)
    if hasattr(model, "features"):
        return nn.Sequential(OrderedDict(features=model.features)).eval()
    # No `features`: keep the whole classifier (its forward may have control flow, as
    # GoogLeNet's); conv_body_records() cuts the trace at its global pooling.
    model.fcnkit_conv_body_only = True
    return model.eval()


def conv_body_records(records: list[LayerRecord]) -> list[LayerRecord]:
    """Cut a classifier's records before its final global pooling (its conv body).

    The last record before the last global-pooling record becomes the output (renamed
    ``output``); records are returned unchanged when there is no global pooling.
    """
    cut = None
    for i, record in enumerate(records):
        # the step from a local field to "global pooling" without one (later layers,
        # e.g. the classifier's Linear, inherit the flag and are not new cuts)
        if (i and record.note.startswith("global pooling") and record.field is None
                and records[i - 1].field is not None):
            cut = i
    if not cut:
        return records
    body = records[:cut]
    last = body[-1]
    return [*body, LayerRecord("output", last.kind, last.shape, last.field, last.whole_input,
                               last.input_size, last.note)]
