"""Receptive fields over layer geometry: size, effective stride, effective padding, centres.

Conventions (per spatial dimension, PyTorch semantics for every layer):

* A layer is described by ``kernel``, ``stride``, ``padding`` (left/top padding, PyTorch's
  symmetric ``padding``), ``dilation`` and, for transposed convolutions, ``transposed=True``
  and ``output_padding``. Pooling layers are the same geometry as a convolution.
* Input pixel ``i`` sits at coordinate ``i`` (pixel centres are integers, pixel 0 is the
  first pixel of the unpadded input). ``ReceptiveField.center(j)`` is the input coordinate
  of the centre of the receptive field of output pixel ``j``; ``bounds(j)`` is the first and
  last input coordinate it covers. Coordinates outside ``[0, H - 1]`` lie in the padding.
* ``size`` is the receptive-field size in input pixels (r), ``stride`` the effective stride
  or jump (S: moving one output pixel moves the field by S input pixels), ``padding`` the
  effective padding (P), so that ``center(j) = S*j + (r - 1)/2 - P``.

Formulas (Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural
Networks", Distill 2019), written bottom-up, layer l on top of a field (r, S, P):

    k_eff = d*(k - 1) + 1                         (dilation enlarges the kernel)
    r_l = r + (k_eff - 1)*S,   S_l = S*s,   P_l = P + p*S

Transposed convolutions: a ConvTranspose(k, s, p, d) is the direct stride-1 convolution
with kernel k_eff and padding k_eff - 1 - p applied to the input with s - 1 zeros inserted
between pixels; zero insertion is a layer of stride 1/s. Composing the two gives an
equivalent single layer with *fractional* stride (exact arithmetic with ``Fraction``):

    k' = (k_eff - 1)/s + 1,   s' = 1/s,   p' = (k_eff - 1 - p)/s

whose centre map is x_in = (x_out + p - (k_eff - 1)/2)/s, the inverse of the direct
convolution's map x_out = (x_in + p - (k_eff - 1)/2)/s -- exactly Caffe's ``coord_map`` for
Deconvolution (caffe/python/caffe/coord_map.py). ``output_padding`` only appends output
pixels at the far end; it changes no coordinate and so no receptive field. For networks with
transposed layers, ``size`` is the length of the continuous footprint (it may be a
fraction); the input pixels an output really depends on always lie inside ``bounds(j)``.

Branches that merge (residual additions, concatenations) take the union of the branches'
footprints: :func:`merge_receptive_fields` (Araujo et al., "arbitrary computation graphs").

Crops (Caffe's ``coord_map``, caffe/python/caffe/coord_map.py). Two maps on grids of the
same stride are aligned by cropping the one whose pixel 0 lies further out: the crop offset
of map A against map B is the index in A of the pixel whose centre is B's pixel 0,
``(c_B(0) - c_A(0)) / S`` (:func:`crop_offset`). Only a whole offset can be cropped
(:func:`integer_crop`); :func:`skip_fusion_crops` runs the whole FCN skip-fusion
computation (score maps upsampled, fused with a skip over their common part, upsampled to
the input) and reports what integer crops cannot remove.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from fcnkit.errors import InputError

Number = int | Fraction

__all__ = [
    "FusionCrops",
    "LayerGeometry",
    "ReceptiveField",
    "crop_offset",
    "integer_crop",
    "layer_geometry",
    "merge_receptive_fields",
    "receptive_field",
    "skip_fusion_crops",
]


def _exact(value: Fraction | int) -> Number:
    """An int when the fraction is whole, otherwise the Fraction itself."""
    value = Fraction(value)
    return int(value) if value.denominator == 1 else value


def _per_dim(value: Any, ndim: int, what: str) -> tuple[Any, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return tuple(value) * ndim
        if len(value) != ndim:
            raise InputError(
                f"{what}: expected 1 or {ndim} values (one per dimension), got {list(value)}"
            )
        return tuple(value)
    return (value,) * ndim


def _maybe_scalar(values: tuple[Any, ...]) -> Any:
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class LayerGeometry:
    """One layer's geometry, per dimension (tuples of ints), PyTorch semantics.

    Attributes:
        kernel: kernel size per dimension.
        stride: stride per dimension.
        padding: zeros added at the start (and end) of each dimension.
        dilation: spacing between kernel taps per dimension (1 = dense kernel).
        transposed: True for ConvTranspose (fractionally strided convolution).
        output_padding: extra output pixels at the far end (transposed layers only).
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    transposed: bool = False
    output_padding: tuple[int, ...] = ()

    @property
    def ndim(self) -> int:
        return len(self.kernel)

    def equivalent_direct(self) -> tuple[tuple[Number, ...], ...]:
        """The (kernel, stride, padding) of the equivalent direct layer, per dimension.

        Direct layers: (d*(k - 1) + 1, s, p). Transposed layers: ((k_eff - 1)/s + 1, 1/s,
        (k_eff - 1 - p)/s) with fractional values (see the module docstring).
        """
        kernels, strides, paddings = [], [], []
        for k, s, p, d in zip(self.kernel, self.stride, self.padding, self.dilation):
            k_eff = d * (k - 1) + 1
            if self.transposed:
                kernels.append(_exact(Fraction(k_eff - 1, s) + 1))
                strides.append(_exact(Fraction(1, s)))
                paddings.append(_exact(Fraction(k_eff - 1 - p, s)))
            else:
                kernels.append(k_eff)
                strides.append(s)
                paddings.append(p)
        return tuple(kernels), tuple(strides), tuple(paddings)


_KERNEL_KEYS = ("kernel", "kernel_size", "k")
_STRIDE_KEYS = ("stride", "s")
_PADDING_KEYS = ("padding", "pad", "p")
_DILATION_KEYS = ("dilation", "d")


def _lookup(spec: Any, keys: Sequence[str], default: Any = None) -> Any:
    for key in keys:
        if isinstance(spec, Mapping):
            if key in spec:
                return spec[key]
        elif hasattr(spec, key):
            return getattr(spec, key)
    return default


def _spec_ndim(spec: Any) -> int:
    if isinstance(spec, LayerGeometry):
        return spec.ndim
    if isinstance(spec, (list, tuple)):
        values = list(spec)
    else:
        values = [_lookup(spec, keys) for keys in (_KERNEL_KEYS, _STRIDE_KEYS, _PADDING_KEYS,
                                                   _DILATION_KEYS, ("output_padding",))]
    lengths = [len(v) for v in values if isinstance(v, (list, tuple)) and len(v) != 1]
    return max(lengths, default=1)


def layer_geometry(spec: Any, ndim: int | None = None, where: str = "layer") -> LayerGeometry:
    """Normalise one layer description into a :class:`LayerGeometry`.

    Args:
        spec: ``(kernel, stride, padding)`` or ``(kernel, stride, padding, dilation)``
            (ints or per-dimension tuples); or a mapping / object with ``kernel`` (or
            ``kernel_size``), ``stride``, ``padding`` (int, tuple, ``"valid"`` or ``"same"``),
            optional ``dilation``, ``transposed`` and ``output_padding``. A torch
            ``nn.Conv2d`` / ``nn.ConvTranspose2d`` / ``nn.MaxPool2d`` has these attributes
            and is accepted as is. ``stride`` defaults to 1 (``None``, as torch pooling
            layers store it, means ``kernel``), ``padding`` to 0, ``dilation`` to 1.
        ndim: number of spatial dimensions; scalars are repeated. Default: inferred.
        where: name used in error messages (e.g. ``"layers[3]"``).

    Returns:
        A LayerGeometry with per-dimension tuples of ints.

    Raises:
        InputError: on missing or out-of-range values.
    """
    if isinstance(spec, LayerGeometry):
        if ndim is None or ndim == spec.ndim:
            return spec
        if spec.ndim != 1:
            raise InputError(f"{where}: has {spec.ndim} dimensions, expected {ndim}")
        return LayerGeometry(spec.kernel * ndim, spec.stride * ndim, spec.padding * ndim,
                             spec.dilation * ndim, spec.transposed, spec.output_padding * ndim)
    ndim = ndim or _spec_ndim(spec)
    transposed = False
    output_padding: Any = 0
    if isinstance(spec, (list, tuple)):
        if len(spec) not in (3, 4):
            raise InputError(
                f"{where}: expected (kernel, stride, padding[, dilation]), got {spec!r}"
            )
        kernel, stride, padding = spec[0], spec[1], spec[2]
        dilation = spec[3] if len(spec) == 4 else 1
    else:
        kernel = _lookup(spec, _KERNEL_KEYS)
        if kernel is None:
            raise InputError(f"{where}: no kernel size given (key 'kernel' or 'kernel_size')")
        stride = _lookup(spec, _STRIDE_KEYS, 1)
        padding = _lookup(spec, _PADDING_KEYS, 0)
        dilation = _lookup(spec, _DILATION_KEYS, 1)
        transposed = bool(_lookup(spec, ("transposed",), False))
        output_padding = _lookup(spec, ("output_padding",), 0)
    if stride is None:  # torch pooling layers default stride=None → kernel_size
        stride = kernel
    kernel_t = _per_dim(kernel, ndim, f"{where}: kernel")
    stride_t = _per_dim(stride, ndim, f"{where}: stride")
    dilation_t = _per_dim(dilation, ndim, f"{where}: dilation")
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            padding_t: tuple[Any, ...] = (0,) * ndim
        elif mode == "same":
            # PyTorch 'same': total padding d*(k-1), the smaller half first (stride 1 only).
            padding_t = tuple(d * (k - 1) // 2 for k, d in zip(kernel_t, dilation_t))
        else:
            raise InputError(f"{where}: padding must be an int, 'valid' or 'same', got {padding!r}")
    else:
        padding_t = _per_dim(padding, ndim, f"{where}: padding")
    output_padding_t = _per_dim(output_padding, ndim, f"{where}: output_padding")
    for name, values, low in (("kernel", kernel_t, 1), ("stride", stride_t, 1),
                              ("padding", padding_t, 0), ("dilation", dilation_t, 1),
                              ("output_padding", output_padding_t, 0)):
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(f"{where}: {name} must be integers >= {low}, got {values}")
    for s, d, op in zip(stride_t, dilation_t, output_padding_t):
        if op and (not transposed or op >= max(s, d)):
            raise InputError(
                f"{where}: output_padding {op} needs a transposed layer and must be smaller "
                f"than stride or dilation ({s}, {d})"
            )
    return LayerGeometry(tuple(kernel_t), tuple(stride_t), tuple(padding_t), tuple(dilation_t),
                         transposed, tuple(output_padding_t))


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of a feature map's pixels in input coordinates (one record per layer).

    Attributes are per dimension: a number for 1-D (or all-scalar) layer lists, a tuple
    otherwise. Values are ints, or ``Fraction`` after transposed layers.

    Attributes:
        size: receptive-field size r in input pixels.
        stride: effective stride S (input pixels per output pixel).
        padding: effective padding P; ``center(0) = (r - 1)/2 - P``.
    """

    size: Any
    stride: Any
    padding: Any

    @classmethod
    def identity(cls, ndim: int = 1) -> ReceptiveField:
        """The field of the input itself: r = 1, S = 1, P = 0."""
        ones, zeros = _maybe_scalar((1,) * ndim), _maybe_scalar((0,) * ndim)
        return cls(ones, ones, zeros)

    @property
    def ndim(self) -> int:
        return len(self.sizes)

    @property
    def sizes(self) -> tuple[Number, ...]:
        """``size`` as a per-dimension tuple."""
        return self.size if isinstance(self.size, tuple) else (self.size,)

    @property
    def strides(self) -> tuple[Number, ...]:
        """``stride`` as a per-dimension tuple."""
        return self.stride if isinstance(self.stride, tuple) else (self.stride,)

    @property
    def paddings(self) -> tuple[Number, ...]:
        """``padding`` as a per-dimension tuple."""
        return self.padding if isinstance(self.padding, tuple) else (self.padding,)

    def center(self, index: int | Sequence[int] = 0) -> Any:
        """Input coordinate of the centre of output pixel ``index`` (per dimension).

        center(j) = S*j + (r - 1)/2 - P. An int when whole, else a Fraction (e.g. 1/2 for
        an even-sized field: the centre falls between two pixels).
        """
        idx = _per_dim(index, self.ndim, "index")
        return _maybe_scalar(tuple(
            _exact(Fraction(s) * j + Fraction(r - 1) / 2 - Fraction(p))
            for j, r, s, p in zip(idx, self.sizes, self.strides, self.paddings)
        ))

    def bounds(self, index: int | Sequence[int] = 0) -> Any:
        """(first, last) input coordinates covered by output pixel ``index``, per dimension.

        first = S*j - P, last = first + r - 1. Integer pixels an output depends on all lie
        in this closed interval; with only direct layers its two ends are read too (where
        they lie inside the input), but dilation or a stride larger than the kernel leaves
        unread pixels in between (e.g. kernel 2, dilation 3: bounds (0, 3), pixels 0 and 3).
        """
        idx = _per_dim(index, self.ndim, "index")
        out = []
        for j, r, s, p in zip(idx, self.sizes, self.strides, self.paddings):
            first = Fraction(s) * j - Fraction(p)
            out.append((_exact(first), _exact(first + Fraction(r) - 1)))
        return _maybe_scalar(tuple(out))

    def then(self, layer: Any, where: str = "layer") -> ReceptiveField:
        """The field after one more layer on top of this one (bottom-up recursion).

        r' = r + (k_eff - 1)*S, S' = S*s, P' = P + p*S (transposed layers via their
        fractional equivalent, see the module docstring).
        """
        geom = layer_geometry(layer, ndim=self.ndim if self.ndim > 1 else None, where=where)
        return self.then_equivalent(*geom.equivalent_direct())

    def then_equivalent(self, kernel: Any, stride: Any, padding: Any) -> ReceptiveField:
        """The field after a layer given directly by its equivalent (k', s', p').

        Values may be Fractions (resampling by non-integer factors) and ``padding`` may be
        negative (a crop that drops the first pixels). The new layer's output pixel j has
        its centre at input coordinate s'*j + (k' - 1)/2 - p' of the current feature map.
        Scalars are repeated over dimensions.
        """
        ndim = max([self.ndim, *(len(v) for v in (kernel, stride, padding)
                                 if isinstance(v, (tuple, list)))])
        k_eq, s_eq, p_eq = (_per_dim(v, ndim, name) for v, name in
                            ((kernel, "kernel"), (stride, "stride"), (padding, "padding")))
        sizes, strides, paddings = (_per_dim(v, ndim, "field") for v in
                                    (self.sizes, self.strides, self.paddings))
        new_r, new_s, new_p = [], [], []
        for r, S, P, k, s, p in zip(sizes, strides, paddings, k_eq, s_eq, p_eq):
            if Fraction(k) < 1 or Fraction(s) <= 0:
                raise InputError(f"equivalent layer needs kernel >= 1 and stride > 0, got {k}, {s}")
            new_r.append(_exact(Fraction(r) + (Fraction(k) - 1) * Fraction(S)))
            new_s.append(_exact(Fraction(S) * Fraction(s)))
            new_p.append(_exact(Fraction(P) + Fraction(p) * Fraction(S)))
        return ReceptiveField(_maybe_scalar(tuple(new_r)), _maybe_scalar(tuple(new_s)),
                              _maybe_scalar(tuple(new_p)))

    def cropped(self, pixels: int | Sequence[int]) -> ReceptiveField:
        """The field of the map after its first ``pixels`` are cropped off (per dimension).

        The new pixel 0 is the old pixel c: ``center(0)`` moves by c*S, so P' = P - c*S
        (size and stride are unchanged; P' may be negative).
        """
        crops = _per_dim(pixels, self.ndim, "pixels")
        padding = tuple(_exact(Fraction(p) - c * Fraction(s))
                        for p, s, c in zip(self.paddings, self.strides, crops))
        return ReceptiveField(self.size, self.stride, _maybe_scalar(padding))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``size``, ``stride``, ``padding``, ``center`` (of pixel 0).

        Whole values are ints; fractional ones are floats.
        """
        return {
            "size": _jsonable(self.size),
            "stride": _jsonable(self.stride),
            "padding": _jsonable(self.padding),
            "center": _jsonable(self.center(0)),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    return value


def receptive_field(layers: Iterable[Any], ndim: int | None = None) -> list[ReceptiveField]:
    """Receptive field after each layer of a single-path stack (first layer = input side).

    Args:
        layers: sequence of ``(kernel, stride, padding)`` / ``(kernel, stride, padding,
            dilation)`` tuples (ints or per-dimension tuples), or mappings / objects accepted
            by :func:`layer_geometry` (which may say ``transposed=True`` and give
            ``output_padding``).
        ndim: number of spatial dimensions. Default: the longest per-dimension tuple found
            (1 when every value is a scalar, in which case records hold plain numbers).

    Returns:
        One :class:`ReceptiveField` per layer; the last one is the stack's output.
        Example: ``receptive_field([(3, 1, 1)] * 2 + [(2, 2, 0)])[-1]`` has size 6,
        stride 2, padding 2, and ``center(0) == 0.5``.

    Raises:
        InputError: for malformed layers (the message names ``layers[i]``).
    """
    layers = list(layers)
    if ndim is None:
        ndim = max((_spec_ndim(spec) for spec in layers), default=1)
    if ndim < 1:
        raise InputError(f"ndim must be >= 1, got {ndim}")
    field = ReceptiveField.identity(ndim)
    out = []
    for i, spec in enumerate(layers):
        geom = layer_geometry(spec, ndim=ndim, where=f"layers[{i}]")
        field = field.then(geom, where=f"layers[{i}]")
        out.append(field)
    return out


def merge_receptive_fields(fields: Sequence[ReceptiveField]) -> ReceptiveField:
    """Receptive field of a merge (add, multiply, concatenate) of aligned branches.

    The merged pixel j sees the union of the branches' footprints: first = min(S*j - P_b),
    last = max(S*j - P_b + r_b - 1), so r = last - first + 1 and P = -(first at j = 0)
    (Araujo et al. 2019, "arbitrary computation graphs"). All branches must have the same
    effective stride (feature maps that are added pixel by pixel must be on one grid).

    Raises:
        InputError: when branches have different effective strides.
    """
    if not fields:
        raise InputError("merge_receptive_fields: need at least one receptive field")
    ndim = max(f.ndim for f in fields)
    sizes, strides, paddings = [], [], []
    for dim in range(ndim):
        per = [
            (Fraction(_pick(f.sizes, dim)), Fraction(_pick(f.strides, dim)),
             Fraction(_pick(f.paddings, dim)))
            for f in fields
        ]
        stride_set = {s for _, s, _ in per}
        if len(stride_set) != 1:
            raise InputError(
                "merge_receptive_fields: branches have different effective strides "
                f"{sorted(float(s) for s in stride_set)}; resample them onto one grid first"
            )
        first = min(-p for _, _, p in per)
        last = max(-p + r - 1 for r, _, p in per)
        sizes.append(_exact(last - first + 1))
        strides.append(_exact(per[0][1]))
        paddings.append(_exact(-first))
    return ReceptiveField(_maybe_scalar(tuple(sizes)), _maybe_scalar(tuple(strides)),
                          _maybe_scalar(tuple(paddings)))


def _pick(values: tuple[Number, ...], dim: int) -> Number:
    return values[0] if len(values) == 1 else values[dim]



# Crops (Caffe coord_map) -------------------------------------------------------------------


def crop_offset(a: ReceptiveField, b: ReceptiveField) -> tuple[Number, ...]:
    """Exact crop offset of map A against map B, per dimension (Caffe ``coord_map.crop``).

    The index j in A whose centre is B's pixel 0: ``j = (c_B(0) - c_A(0)) / S_A``. An int
    when whole; a Fraction when the grids are shifted by part of a pixel, which no crop can
    fix. Negative when B's pixel 0 lies before A's.

    Raises:
        ValueError: when A and B are not on grids of the same stride (a caller's bug: maps
            of different strides are never cropped against each other).
    """
    ndim = max(a.ndim, b.ndim)
    strides_a = _per_dim(a.strides, ndim, "a.stride")
    strides_b = _per_dim(b.strides, ndim, "b.stride")
    if tuple(map(Fraction, strides_a)) != tuple(map(Fraction, strides_b)):
        raise ValueError(f"maps are on different grids: strides {strides_a} and {strides_b}")
    centres_a = _per_dim(a.center(0), ndim, "a.center")
    centres_b = _per_dim(b.center(0), ndim, "b.center")
    return tuple(_exact((Fraction(cb) - Fraction(ca)) / Fraction(s))
                 for ca, cb, s in zip(centres_a, centres_b, strides_a))


def integer_crop(offset: Sequence[Number]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Split exact crop offsets into the crop to apply and the misalignment left over.

    A whole offset is cropped exactly (nothing left over). A fractional one cannot be
    cropped: the maps are aligned at pixel 0 instead, as torchvision's and d2l's heads do,
    and the whole offset is left over.

    Returns:
        ``(crop, left_over)`` per dimension; ``left_over`` is in map pixels.
    """
    crops, left = [], []
    for value in offset:
        value = Fraction(value)
        whole = value.denominator == 1
        crops.append(int(value) if whole else 0)
        left.append(0.0 if whole else float(value))
    return tuple(crops), tuple(left)


@dataclass(frozen=True)
class FusionCrops:
    """The crops of an FCN skip fusion, per dimension (see :func:`skip_fusion_crops`).

    Attributes:
        skip_offsets: per skip, in fusion order: the index in the skip's score map of the
            upsampled map's pixel 0 (Caffe's crop offset; the fusion adds the two maps over
            their common part).
        final_offset: the index in the final upsampled map of input pixel 0.
        skip_misalignment: per skip, the shift (input pixels) integer crops leave.
        final_misalignment: the same for the final map (0 when the output is aligned).
    """

    skip_offsets: tuple[tuple[int, ...], ...]
    final_offset: tuple[int, ...]
    skip_misalignment: tuple[tuple[float, ...], ...]
    final_misalignment: tuple[float, ...]


def skip_fusion_crops(
    coarse: Sequence[Any],
    skips: Sequence[tuple[Any, Sequence[Any]]],
    final: Any,
    ndim: int = 2,
) -> FusionCrops:
    """Crop offsets of an FCN-32s/16s/8s head from its layers' geometry (Caffe coord_map).

    The running score map starts as the coarsest one; for each skip it is upsampled onto
    the skip's grid and added to the skip's score map over their common part, which starts
    at the upsampled map's pixel ``max(0, -offset)``; at the end it is upsampled to the
    input grid and cropped at ``final_offset``. For Caffe's voc-fcn8s (conv1_1 padding 100)
    this gives the published crops 5, 9 and 31 (Long et al. 2015; fcn.berkeleyvision.org).

    Args:
        coarse: layers (anything :func:`layer_geometry` accepts, torch modules included)
            from the input to the coarsest score map, in order.
        skips: ``(upsampler, skip_layers)`` per skip, coarse to fine: the layer that brings
            the running map onto the skip's grid, and the layers from the input to the
            skip's score map.
        final: the upsampler onto the input grid.
        ndim: spatial dimensions.

    Returns:
        A :class:`FusionCrops`. Misalignments are in input pixels.
    """
    field = receptive_field(coarse, ndim)[-1]
    skip_offsets, skip_misalignment = [], []
    for upsampler, skip_layers in skips:
        upsampled = field.then(upsampler)
        skip = receptive_field(skip_layers, ndim)[-1]
        crops, left = integer_crop(crop_offset(skip, upsampled))
        skip_offsets.append(crops)
        skip_misalignment.append(tuple(v * float(s) for v, s in zip(left, skip.strides)))
        field = upsampled.cropped([max(0, -c) for c in crops])
    out = field.then(final)
    crops, left = integer_crop(crop_offset(out, ReceptiveField.identity(ndim)))
    return FusionCrops(tuple(skip_offsets), crops, tuple(skip_misalignment),
                       tuple(v * float(s) for v, s in zip(left, out.strides)))
