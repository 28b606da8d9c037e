"""One schema per kind of file fcnkit reads: every field is checked before anything uses it.

A schema is a tuple of :class:`Field` s (name, predicate, what was expected, required or
not). :func:`field_problem` says what is wrong with a mapping, :func:`check_fields` raises
the one-line :class:`~fcnkit.errors.InputError` naming the file and the field. The kinds:

* :data:`METRICS_LINE`: one line of a run's ``metrics.jsonl`` (readers skip and count lines
  that fail it, as they do a line torn by a crash);
* :data:`RUN_CONFIG`: a run's ``config.json`` (a JSON object);
* :data:`RESUME_STATE`: the resume fields of a training checkpoint (``last.pt``);
* :data:`MODEL_STATE`: a checkpoint's ``model_state`` (names → tensors);
* :data:`EXPORT_METADATA`: the decoded metadata of fcnkit's safetensors and ONNX exports;
* :data:`ONNX_OUTPUT` and :data:`COARSE_ONNX_METADATA`: what an ONNX file outputs, and what
  a file whose graph stops at the coarse scores records to finish the network.

The checkpoint's model fields (``model_config``, ``classes``, ``palette``, ``epoch``,
``step``) are checked by :func:`fcnkit.runtime.checkpoint.checkpoint_field_problem`.
This module imports no third-party package (tensors are recognised through ``torch`` only
when it is already imported).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fcnkit.errors import InputError

Predicate = Callable[[Any], bool]


@dataclass(frozen=True)
class Field:
    """One field of a schema: ``check(value)`` must hold; ``expected`` says what it wants."""

    name: str
    check: Predicate
    expected: str
    required: bool = False


def is_int(value: Any, minimum: int | None = None) -> bool:
    """An int (not a bool), at least ``minimum`` when given."""
    return (isinstance(value, int) and not isinstance(value, bool)
            and (minimum is None or value >= minimum))


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def is_tensor(value: Any) -> bool:
    """A ``torch.Tensor`` (False when torch is not imported: then none was loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def optional(check: Predicate) -> Predicate:
    """``check`` or None."""
    return lambda value: value is None or check(value)


def list_of(check: Predicate, length: int | None = None) -> Predicate:
    """A list or tuple whose items pass ``check`` (of ``length`` items when given)."""
    return lambda value: (isinstance(value, (list, tuple))
                          and (length is None or len(value) == length)
                          and all(check(item) for item in value))


def mapping_of(check: Predicate) -> Predicate:
    """A mapping of string keys whose values pass ``check``."""
    return lambda value: isinstance(value, Mapping) and all(
        isinstance(k, str) and check(v) for k, v in value.items())


def is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def _nonneg(value: Any) -> bool:
    return is_int(value, 0)


def _number_or_none(value: Any) -> bool:
    # metrics.jsonl writes an undefined score as null (strict JSON), never NaN
    return value is None or is_number(value)


#: One line of ``metrics.jsonl`` (``"kind": "step"`` or ``"epoch"``; see
#: :mod:`fcnkit.training.runlog`). Fields not listed are not read by fcnkit.
METRICS_LINE: tuple[Field, ...] = (
    # fcnkit writes integers; a number is accepted (the report plots any x axis).
    Field("step", lambda v: is_number(v) and v >= 0, "a non-negative number", required=True),
    Field("kind", is_str, "a string"),
    Field("epoch", _nonneg, "a non-negative integer"),
    *(Field(name, _number_or_none, "a number or null") for name in (
        "loss", "train_loss", "lr", "img_per_s", "time_s", "miou", "pixel_acc", "mean_acc",
        "fwiou")),
)

#: A run's ``config.json`` (the TrainConfig as a JSON object; its values are checked by
#: ``TrainConfig.from_dict``).
RUN_CONFIG: tuple[Field, ...] = (
    Field("model", optional(is_str), "a model name"),
    Field("data", optional(is_str), "a dataset spec"),
    Field("epochs", optional(_nonneg), "a non-negative integer"),
)


def _rng_state(value: Any) -> bool:
    if not isinstance(value, Mapping):
        return False
    python, numpy, torch_state = value.get("python"), value.get("numpy"), value.get("torch")
    return ((python is None or (list_of(lambda v: True, 3)(python)
                                and list_of(is_int)(python[1])))
            and (numpy is None or (list_of(lambda v: True, 5)(numpy) and is_str(numpy[0])
                                   and list_of(is_int)(numpy[1]) and is_int(numpy[2])
                                   and is_int(numpy[3]) and is_number(numpy[4])))
            and (torch_state is None or is_tensor(torch_state))
            and (value.get("cuda") is None or list_of(is_tensor)(value.get("cuda"))))


def _optimizer_state(value: Any) -> bool:
    # torch.optim.Optimizer.state_dict(): {"state": {...}, "param_groups": [{...}, ...]}
    return isinstance(value, Mapping) and (not value or (
        isinstance(value.get("state"), Mapping)
        and list_of(is_mapping)(value.get("param_groups"))))


def _metrics(value: Any) -> bool:
    # A checkpoint (pickled, not JSON) keeps an undefined score as NaN: a validation split
    # with no labelled pixel has no mIoU, and the run still saves last.pt.
    miou = value.get("miou") if isinstance(value, Mapping) else None
    return isinstance(value, Mapping) and (
        miou is None or (isinstance(miou, (int, float)) and not isinstance(miou, bool)))


#: The fields of a training checkpoint that ``--resume`` restores.
RESUME_STATE: tuple[Field, ...] = (
    Field("rng_state", _rng_state,
          "python/numpy/torch generator states as saved by fcnkit train"),
    Field("optimizer_state", _optimizer_state, "an optimizer state dict"),
    Field("scheduler_state", is_mapping, "a scheduler state dict"),
    Field("scaler_state", is_mapping, "a gradient scaler state dict"),
    Field("metrics", _metrics, "a dict whose miou is a number (NaN: undefined) or null"),
    Field("best_miou", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
          and not math.isnan(v), "a number"),
    Field("best_epoch", optional(_nonneg), "a non-negative integer or null"),
    Field("world_size", lambda v: is_int(v, 1), "a positive integer"),
)

#: A checkpoint's weights.
MODEL_STATE: tuple[Field, ...] = (
    Field("model_state", mapping_of(is_tensor), "a dict of parameter names to tensors",
          required=True),
)

#: Decoded fcnkit metadata of an exported ``.safetensors`` or ``.onnx`` file.
EXPORT_METADATA: tuple[Field, ...] = (
    Field("model_config", lambda v: isinstance(v, Mapping) and is_str(v.get("name"))
          and is_int(v.get("num_classes"), 1),
          "a JSON object with a model name and an integer num_classes >= 1", required=True),
    Field("classes", optional(list_of(is_str)), "a list of class names"),
    Field("palette", optional(list_of(list_of(lambda v: is_int(v, 0) and v <= 255, 3))),
          "a list of RGB triples 0..255"),
    Field("mean", optional(list_of(is_number)), "a list of numbers"),
    Field("std", optional(list_of(is_number)), "a list of numbers"),
)

#: Largest upsampling factor and kernel side an exported final upsampler may record: far
#: above any FCN's (×32, kernel 64), small enough that a forged file cannot make the
#: rebuilt layer allocate gigabytes.
MAX_UPSAMPLING = 512

#: What an ONNX file's graph outputs (``fcnkit.output``; a file without it: logits).
ONNX_OUTPUT: tuple[Field, ...] = (
    Field("output", lambda v: v in ("logits", "coarse"), '"logits" or "coarse"'),
)


def _pair(minimum: int) -> Predicate:
    return list_of(lambda v: is_int(v, minimum) and v <= MAX_UPSAMPLING, 2)


def _final_upsampler(value: Any) -> bool:
    """A bilinear final upsampler as ``fcnkit.inference.export`` records it."""
    if not isinstance(value, Mapping):
        return False
    kind = value.get("kind")
    if kind == "interpolate":  # fcnkit.models.heads.Interpolate: only this mode exists
        return (is_int(value.get("factor"), 1) and value["factor"] <= MAX_UPSAMPLING
                and value.get("mode") == "bilinear" and value.get("align_corners") is False)
    if kind != "transposed_conv":
        return False
    size: Any = value.get("kernel_size")
    stride: Any = value.get("stride")
    padding: Any = value.get("padding")
    # Square geometry (the label paths read one side); 2p < k gives every input an output.
    if not (_pair(1)(size) and _pair(1)(stride) and _pair(0)(padding)
            and size[0] == size[1] and stride[0] == stride[1] and padding[0] == padding[1]
            and 2 * padding[0] < size[0]):
        return False
    weights = list_of(lambda v: is_number(v) and v >= 0, size[1])  # one row of the kernel
    return list_of(weights, size[0])(value.get("kernel"))


#: Fields of an ONNX file whose graph outputs ``coarse_scores``: the final upsampler
#: (``kind`` "transposed_conv": square ``kernel_size``, ``stride`` and ``padding`` pairs
#: and the one non-negative ``kernel`` every class shares; or
#: ``kind`` "interpolate": ``factor``, ``mode`` "bilinear", ``align_corners`` false) and
#: ``final_offset``, the ``(dy, dx)`` crop of the upsampled map to the input.
COARSE_ONNX_METADATA: tuple[Field, ...] = (
    Field("final_upsampler", _final_upsampler,
          'a JSON object: kind "transposed_conv" with kernel_size, stride, padding pairs and '
          'a non-negative kernel, or kind "interpolate" with an integer factor', required=True),
    Field("final_offset", list_of(lambda v: is_int(v, 0), 2),
          "two non-negative integers [dy, dx]", required=True),
)


def _show(value: Any) -> str:
    text = repr(value) if not is_tensor(value) else f"tensor{tuple(value.shape)}"
    if isinstance(value, (Mapping, list, tuple)) and not text.startswith("tensor"):
        text = f"{type(value).__name__} {text}"
    return text if len(text) <= 60 else text[:57] + "..."


def field_problem(data: Any, schema: tuple[Field, ...]) -> str | None:
    """What is wrong with ``data`` under ``schema`` (``"field X=... (expected ...)"``),
    or None. ``data`` that is not a mapping is a problem of its own."""
    if not isinstance(data, Mapping):
        return f"a {type(data).__name__} where a JSON object is expected"
    for spec in schema:
        if spec.name not in data:
            if spec.required:
                return f"no field {spec.name} (expected {spec.expected})"
            continue
        value = data[spec.name]
        try:
            ok = spec.check(value)
        except (TypeError, ValueError, IndexError, KeyError, AttributeError):
            ok = False
        if not ok:
            return f"field {spec.name}={_show(value)} (expected {spec.expected})"
    return None


def check_fields(data: Any, schema: tuple[Field, ...], *, file: str | os.PathLike[str],
                 what: str, fix: str) -> None:
    """Raise one :class:`~fcnkit.errors.InputError` line naming ``file`` and the first field
    of ``data`` that ``schema`` refuses.

    Args:
        data: the decoded content (usually a dict).
        schema: the file kind's fields.
        file: the file it was read from.
        what: what the file is (``"checkpoint"``, ``"run config"``).
        fix: what the user can do, e.g. ``"re-create it with fcnkit train"``.
    """
    problem = field_problem(data, schema)
    if problem is not None:
        raise InputError(f"{what} {file} has {problem}; {fix}")
