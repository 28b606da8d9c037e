"""The explorer's JSON views: query parameters in, plain dicts out, all geometry from arith.

Each ``*_view(params)`` takes the query parameters of one request (a mapping of strings, as
``urllib.parse.parse_qs`` gives them, values possibly lists) and returns a JSON-ready dict.
The page renders these dicts and computes nothing. A parameter the user got wrong raises
:class:`~fcnkit.errors.InputError` with one line naming it; the work of every view is
bounded by :mod:`fcnkit.limits` (the same bounds as ``fcnkit animate`` / ``gridding``).

Geometry is one spatial dimension repeated (square inputs and kernels), PyTorch semantics
unless ``convention`` says ``caffe`` or ``tensorflow``.

Views (the HTTP paths of :mod:`fcnkit.web.server` are ``/api/<name>``):

* ``layer``: :func:`fcnkit.arith.layer.describe_layer` and the Dumoulin & Visin size
  relationship that applies (:func:`fcnkit.arith.relationships.size_relationship`).
* ``animation``: the kernel positions per output pixel on the (padded, zero-inserted) input,
  :func:`fcnkit.arith.taps.tap_layout`.
* ``matrix``: the convolution as a dense matrix C (a direct layer) or Cᵀ (a transposed
  one), entries = kernel tap numbers, :func:`fcnkit.arith.conv_matrix`.
* ``stack``: output size and receptive field of every layer of a stack, and the input
  region of a selected output pixel seen from every intermediate map
  (:func:`fcnkit.arith.receptive_field`).
* ``gridding``: coverage map, HDC verdict and suggested rates (:mod:`fcnkit.arith.gridding`).
* ``inverse``: the padding (direct) and output_padding (transposed) that give a target size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fcnkit import limits
from fcnkit.arith import sizes
from fcnkit.arith.gridding import hdc_check, suggest_rates
from fcnkit.arith.layer import LAYER_KINDS, describe_layer
from fcnkit.arith.matrix import conv_matrix
from fcnkit.arith.receptive import receptive_field
from fcnkit.arith.relationships import size_relationship
from fcnkit.arith.sizes import as_pair
from fcnkit.arith.taps import INPUT, INSERTED_ZERO, PADDING, animation_cost, tap_layout
from fcnkit.errors import InputError
from fcnkit.jsonio import loads_bounded

__all__ = ["VIEWS", "view"]

Params = Mapping[str, Any]


def _get(params: Params, name: str, default: Any = None) -> Any:
    value = params.get(name, default)
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else default
    return value


def _int(params: Params, name: str, default: int | None = None, *, low: int = 0,
         high: int = limits.MAX_INPUT_SIZE) -> int:
    text = _get(params, name)
    if text is None or str(text).strip() == "":
        if default is None:
            raise InputError(f"{name}: missing; give an integer")
        return default
    text = str(text).strip()
    if len(text) > limits.MAX_NUMBER_CHARS:  # int() is quadratic in the digits
        raise InputError(f"{name}: a number of {len(text)} characters; at most "
                         f"{limits.MAX_NUMBER_CHARS} are accepted")
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{name}: expected an integer, got {text!r}") from None
    if value < low:
        raise InputError(f"{name} must be >= {low}, got {value}")
    limits.check_at_most(name, value, high, f"use a smaller {name}")
    return value


def _bool(params: Params, name: str) -> bool:
    return str(_get(params, name, "0")).strip().lower() in ("1", "true", "on", "yes")


def _choice(params: Params, name: str, choices: tuple[str, ...], default: str) -> str:
    value = str(_get(params, name, default)).strip().lower()
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _padding(params: Params, convention: str) -> int | str:
    text = str(_get(params, "padding", "0")).strip().lower()
    if text in ("same", "valid"):
        return text
    if convention == "tensorflow":
        raise InputError(f"padding: the tensorflow convention takes 'same' or 'valid', got "
                         f"{text!r}")
    return _int(params, "padding", 0)


def _layer_args(params: Params) -> dict[str, Any]:
    """One layer's keyword arguments for :func:`describe_layer` from the query."""
    convention = _choice(params, "convention", sizes.CONVENTIONS, "pytorch")
    kind = _choice(params, "kind", LAYER_KINDS, "conv")
    stride_text = _get(params, "stride")
    return {
        "kind": kind,
        "convention": convention,
        "size": _int(params, "size", low=1),
        "kernel": _int(params, "kernel", low=1, high=1024),
        "stride": None if stride_text in (None, "") else _int(params, "stride", low=1),
        "padding": _padding(params, convention),
        "dilation": _int(params, "dilation", 1, low=1, high=1024),
        "output_padding": _int(params, "output_padding", 0),
        "ceil_mode": _bool(params, "ceil_mode"),
    }


def layer_view(params: Params) -> dict[str, Any]:
    """Output size, inverse layer and the size relationship of one layer."""
    args = _layer_args(params)
    report = describe_layer(**args)
    relationship = size_relationship(**args)
    return {"layer": report, "relationship": relationship.as_dict()}


def animation_view(params: Params) -> dict[str, Any]:
    """Cell kinds of the drawn input grid and the kernel taps of every output pixel
    (:func:`fcnkit.arith.taps.tap_layout`), refused as ``fcnkit animate`` refuses it
    (:func:`fcnkit.limits.check_animation`)."""
    args = _layer_args(params)
    if args["convention"] != "pytorch" or args["ceil_mode"]:
        raise InputError("the animation draws PyTorch floor-mode geometry; choose the pytorch "
                         "convention without ceil_mode")
    describe_layer(**args)  # the layer's own validation first: the clearest message
    if isinstance(args["padding"], str):
        raise InputError("padding: the animation takes an integer padding")
    stride = args["stride"] if args["stride"] is not None else (
        args["kernel"] if args["kind"] == "pool" else 1)
    # The command line's check (``fcnkit animate``): frames and frames x grid cells, so
    # that the tap table (frames x kernel taps) and the cell grid stay small.
    cost = animation_cost(*(as_pair(v, name) for v, name in (
        (args["size"], "size"), (args["kernel"], "kernel"), (stride, "stride"),
        (args["padding"], "padding"), (args["dilation"], "dilation"))),
        args["kind"] == "conv_transpose", as_pair(args["output_padding"], "output_padding"))
    if cost is not None:  # invalid geometry: tap_layout below says what is wrong
        limits.check_animation(*cost)
    geom = tap_layout(args["size"], args["kernel"], stride, args["padding"], args["dilation"],
                      args["kind"] == "conv_transpose", args["output_padding"])
    return {
        "cells": geom.cells.tolist(),
        "input_index": geom.input_index.tolist(),
        "output_shape": list(geom.output_shape),
        "taps": geom.taps.tolist(),
        "grid_stride": list(geom.grid_stride),
        "transposed": geom.transposed,
        "kinds": {"padding": PADDING, "input": INPUT, "inserted_zero": INSERTED_ZERO},
    }


def matrix_view(params: Params) -> dict[str, Any]:
    """The layer as a dense matrix: C (direct) or Cᵀ (transposed); rows are output pixels.

    Entries are kernel tap numbers 1..k² (row-major), 0 where the output pixel does not
    read the input pixel. For a transposed layer, C is the matrix of the direct convolution
    with the same geometry on an input of the transposed layer's output size, restricted
    to the rows of the transposed layer's input pixels.
    """
    args = _layer_args(params)
    if args["convention"] != "pytorch" or args["kind"] == "pool":
        raise InputError("the matrix view shows PyTorch convolutions; choose kind conv or "
                         "conv_transpose with the pytorch convention")
    if isinstance(args["padding"], str):
        raise InputError("padding: the matrix view takes an integer padding")
    report = describe_layer(**args)
    k, s, p, d = args["kernel"], args["stride"] or 1, args["padding"], args["dilation"]
    size, out = args["size"], report["output_size"]
    transposed = args["kind"] == "conv_transpose"
    direct_in, direct_out = (out, size) if transposed else (size, out)
    entries = (direct_in * direct_in) * (direct_out * direct_out)
    limits.check_at_most(f"the matrix has {direct_out ** 2}x{direct_in ** 2} entries", entries,
                         limits.MAX_MATRIX_ENTRIES, "use a smaller input size")
    taps = np.arange(1, k * k + 1, dtype=np.float64).reshape(1, 1, k, k)
    c = conv_matrix((1, direct_in, direct_in), taps, s, p, d).toarray()
    if transposed:
        # The direct convolution on the transposed output may produce more rows/columns
        # than the transposed input has (output_padding >= stride); keep the existing ones.
        full = sizes.conv_output_size(direct_in, k, s, p, d)
        keep = [r * full + q for r in range(size) for q in range(size)]
        matrix = c[keep].T
    else:
        matrix = c
    row, col = _int(params, "row", 0), _int(params, "col", 0)
    if row >= out or col >= out:
        raise InputError(f"row, col: the selected output pixel ({row}, {col}) is outside the "
                         f"{out}x{out} output")
    return {
        "name": "C^T" if transposed else "C",
        "shape": list(matrix.shape),
        "matrix": matrix.astype(int).tolist(),
        "input_shape": [size, size],
        "output_shape": [out, out],
        "selected_row": row * out + col,
        "kernel_taps": k * k,
    }


def _stack_layers(params: Params) -> list[dict[str, Any]]:
    text = _get(params, "layers")
    if text in (None, ""):
        raise InputError("layers: missing; give a JSON list such as "
                         '[{"kind": "conv", "kernel": 3, "stride": 1, "padding": 1}]')
    layers = loads_bounded(str(text), "layers", max_depth=limits.MAX_JSON_DEPTH,
                           max_digits=limits.MAX_NUMBER_CHARS)
    if not isinstance(layers, list) or not layers:
        raise InputError("layers: expected a non-empty JSON list of layer objects")
    limits.check_at_most("layers in the stack", len(layers), limits.MAX_STACK_LAYERS,
                         "use fewer layers")
    out = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise InputError(f"layers[{i}]: expected an object with kind, kernel, stride, "
                             "padding, dilation, output_padding")
        unknown = set(layer) - {"kind", "kernel", "stride", "padding", "dilation",
                                "output_padding", "ceil_mode"}
        if unknown:
            raise InputError(f"layers[{i}]: unknown keys {sorted(unknown)}")
        out.append({str(k): str(v) for k, v in layer.items()})
    return out


def stack_view(params: Params) -> dict[str, Any]:
    """Sizes and receptive fields through a stack, and a selected output pixel's region.

    Query: ``size``, ``convention``, ``layers`` (JSON list of objects with the layer
    parameters of :func:`layer_view`), ``row`` / ``col`` of the selected pixel of the last
    map. For every map m (0 = the input) ``region`` is the interval of map m that the
    selected pixel depends on: the bounds of the receptive field of layers m+1..L
    (:meth:`fcnkit.arith.ReceptiveField.bounds`), in map m's pixel coordinates.
    """
    convention = _choice(params, "convention", sizes.CONVENTIONS, "pytorch")
    size = _int(params, "size", low=1)
    specs = _stack_layers(params)
    rows, geometries, sizes_out = [], [], [size]
    current = size
    for i, spec in enumerate(specs):
        try:
            args = _layer_args({**spec, "size": str(current), "convention": convention})
            report = describe_layer(**args)
        except InputError as exc:
            raise InputError(f"layers[{i}]: {exc}") from None
        kind, k, d = args["kind"], args["kernel"], args["dilation"]
        s = args["stride"] if args["stride"] is not None else (k if kind == "pool" else 1)
        padding = args["padding"]
        if padding == "valid":
            padding = 0
        elif padding == "same":
            # The receptive field's padding is the padding before the first pixel.
            padding = sizes.same_padding(k, s, d, size=current)[0]
        geometries.append({"kernel": k, "stride": s, "padding": padding, "dilation": d,
                           "transposed": kind == "conv_transpose",
                           "output_padding": args["output_padding"]})
        current = report["output_size"]
        sizes_out.append(current)
        rows.append({"kind": kind, "kernel": k, "stride": s, "padding": report["padding"],
                     "dilation": d, "output_padding": args["output_padding"],
                     "input_size": report["input_size"], "output_size": current})
    fields = receptive_field(geometries)
    for row_info, field in zip(rows, fields):
        row_info["receptive_field"] = field.as_dict()
    row, col = _int(params, "row", 0), _int(params, "col", 0)
    if row >= current or col >= current:
        raise InputError(f"row, col: the selected pixel ({row}, {col}) is outside the "
                         f"{current}x{current} output")
    regions = []
    for m in range(len(geometries) + 1):
        if m == len(geometries):
            regions.append({"map": m, "rows": [row, row], "cols": [col, col]})
            continue
        top = receptive_field(geometries[m:])[-1]
        regions.append({"map": m, "rows": [_plain(v) for v in top.bounds(row)],
                        "cols": [_plain(v) for v in top.bounds(col)]})
    return {"input_size": size, "convention": convention, "layers": rows,
            "map_sizes": sizes_out, "selected": [row, col], "regions": regions}


def _plain(value: Any) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


def gridding_view(params: Params) -> dict[str, Any]:
    """Coverage map, HDC quantities, verdict and hole-free schedules of a dilated stack."""
    text = str(_get(params, "rates", "")).strip()
    if any(len(v.strip()) > limits.MAX_NUMBER_CHARS for v in text.split(",")):
        raise InputError(f"rates: a rate longer than {limits.MAX_NUMBER_CHARS} characters")
    try:
        rates = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"rates: expected comma-separated integers like 1,2,5, got {text!r}")\
            from None
    if not rates:
        raise InputError("rates: give at least one dilation rate, e.g. 1,2,5")
    limits.check_at_most("layers in the stack", len(rates), limits.MAX_STACK_LAYERS,
                         "use fewer rates")
    kernel = _int(params, "kernel", 3, low=2, high=15)
    if any(r < 1 for r in rates):
        raise InputError(f"rates: dilation rates must be integers >= 1, got {rates}")
    side = 1 + (kernel - 1) * sum(rates)
    limits.check_at_most("the receptive field 1 + (K-1)*sum(rates)", side,
                         limits.MAX_COVERAGE_MAP_SIDE, "use smaller rates")
    report = hdc_check(rates, kernel_size=kernel)
    # Hole-free schedules reaching the same receptive field: with as many layers if one
    # exists, else with the fewest extra layers (up to 3 more) that make one possible.
    suggestions: list[Any] = []
    for layers in range(len(rates), len(rates) + 4):
        suggestions = suggest_rates(layers, report.receptive_field, kernel_size=kernel,
                                    limit=5)
        if suggestions:
            break
    return {
        "verdict": "gridding" if report.grids else "no gridding",
        **report.as_dict(include_coverage=True),
        "suggestions": [{"rates": list(s.rates), "receptive_field": s.receptive_field,
                         "m_rule_ok": s.m_rule_ok} for s in suggestions],
    }


def inverse_view(params: Params) -> dict[str, Any]:
    """Which padding (direct) / output_padding (transposed) gives the ``target`` size.

    Each problem answers independently: ``{"padding": [low, high]}`` or ``{"error": ...}``.
    """
    size = _int(params, "size", low=1)
    target = _int(params, "target", low=1)
    kernel = _int(params, "kernel", low=1, high=1024)
    stride = _int(params, "stride", 1, low=1)
    dilation = _int(params, "dilation", 1, low=1, high=1024)
    padding = _int(params, "padding", 0)
    out: dict[str, Any] = {"size": size, "target": target, "kernel": kernel, "stride": stride,
                           "dilation": dilation, "padding": padding}
    try:
        low, high = sizes.padding_for(size, target, kernel, stride, dilation)
        out["conv_padding"] = {"padding": [low, high]}
    except InputError as exc:
        out["conv_padding"] = {"error": str(exc)}
    try:
        a = sizes.output_padding_for(size, target, kernel, stride, padding, dilation)
        out["transposed_output_padding"] = {"output_padding": a}
    except InputError as exc:
        out["transposed_output_padding"] = {"error": str(exc)}
    return out


#: The views by name, as served under ``/api/<name>``.
VIEWS: dict[str, Callable[[Params], dict[str, Any]]] = {
    "layer": layer_view,
    "animation": animation_view,
    "matrix": matrix_view,
    "stack": stack_view,
    "gridding": gridding_view,
    "inverse": inverse_view,
}


def view(name: str, params: Params) -> dict[str, Any]:
    """Run the view ``name`` on ``params``.

    Raises:
        InputError: an unknown view or a bad parameter.
    """
    if name not in VIEWS:
        raise InputError(f"unknown view {name!r}; one of {', '.join(VIEWS)}")
    return VIEWS[name](params)
