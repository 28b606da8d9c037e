"""Strict JSON out of fcnkit: every ``--json`` report and every JSON file it writes.

Python's ``json`` module writes ``NaN``, ``Infinity`` and ``-Infinity`` by default, which
are not JSON (RFC 8259, section 6: "Numeric values that cannot be represented ... such as
Infinity and NaN are not permitted") and which ``jq``, JavaScript's ``JSON.parse`` and
most other readers reject. fcnkit writes ``null`` for an undefined number instead (an mIoU
over a split with no labelled pixel, the best mIoU before any epoch), and serialises with
``allow_nan=False`` so that a value that slips through fails loudly rather than silently
producing invalid output.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from fcnkit.errors import InputError


def to_strict_json(value: Any) -> Any:
    """``value`` as plain JSON types: non-finite floats → None, tuples/sets/arrays → lists.

    numpy scalars and arrays and torch tensors (anything with ``tolist``) become Python
    numbers/lists; dataclass-like objects become their ``vars``; Path-like objects strings.
    """
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_strict_json(v) for v in value]
    if hasattr(value, "tolist"):
        return to_strict_json(value.tolist())
    if hasattr(value, "__fspath__"):
        return str(value)
    if hasattr(value, "__dict__"):
        return to_strict_json(vars(value))
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`to_strict_json` (value) with ``allow_nan=False``."""
    return json.dumps(to_strict_json(value), allow_nan=False, **kwargs)


def loads_bounded(text: str, what: str, *, max_depth: int, max_digits: int) -> Any:
    """``json.loads`` of untrusted ``text`` whose nesting and numbers are bounded first.

    Python's parser recurses once per nested array/object (a few thousand levels end in
    ``RecursionError``) and turns any run of digits into an ``int`` (quadratic in its
    length; beyond ``sys.get_int_max_str_digits()`` a ``ValueError``). Both are checked
    before anything is built: the nesting by one pass over the brackets outside strings,
    the numbers by the parser's ``parse_int`` / ``parse_float`` hooks, which see the text.

    Args:
        text: the JSON text.
        what: names the text in messages, e.g. ``"layers"``.
        max_depth: most nested arrays/objects (1 = a flat list).
        max_digits: longest number literal, in characters.

    Raises:
        InputError: invalid JSON, nested deeper than ``max_depth`` or a number longer than
            ``max_digits`` (one line naming ``what``).
    """
    depth, deepest, in_string, escaped = 0, 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > max_depth:
                raise InputError(f"{what}: JSON nested more than {max_depth} levels deep")
        elif char in "]}":
            depth -= 1

    def number(literal: str, convert: Any) -> Any:
        if len(literal) > max_digits:
            raise InputError(f"{what}: a number of {len(literal)} characters; at most "
                             f"{max_digits} are accepted")
        return convert(literal)

    try:
        return json.loads(text, parse_int=lambda s: number(s, int),
                          parse_float=lambda s: number(s, float))
    except json.JSONDecodeError as exc:
        raise InputError(f"{what}: not valid JSON ({exc.msg} at character {exc.pos})") from None
