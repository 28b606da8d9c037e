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
