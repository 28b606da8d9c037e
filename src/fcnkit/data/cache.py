"""The dataset cache: the synthetic dataset generated once per spec and reused.

``fcnkit demo`` trains on the embedded synthetic dataset. Generating it takes a while, so
it is written once under the cache directory, in a folder named after its spec, and reused
while its ``synthetic.json`` manifest matches the spec and the generator version.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fcnkit.atomic import is_incomplete
from fcnkit.data.synthetic import generate_synthetic_dataset, task_info

__all__ = ["cache_dir", "ensure_dataset"]


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$FCNKIT_CACHE``, else ``~/.cache/fcnkit`` (user ``~`` expanded)."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get("FCNKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fcnkit"


def ensure_dataset(
    spec: Mapping[str, Any], cache: str | os.PathLike[str] | None = None
) -> tuple[Path, bool]:
    """The synthetic dataset for ``spec`` under the cache; generated when absent.

    Args:
        spec: ``{"train": int, "val": int, "seed": int, "size": (h, w)}`` and optionally
            ``"task"`` (``"objects"`` by default, or another of
            :data:`fcnkit.data.synthetic.TASKS`), the arguments of
            :func:`fcnkit.data.synthetic.generate_synthetic_dataset`.
        cache: cache directory (see :func:`cache_dir`).

    Returns:
        ``(directory, generated_now)``. A directory whose ``synthetic.json`` does not match
        ``spec`` (another generator version), or that is marked incomplete (an
        interrupted run, :func:`fcnkit.atomic.incomplete_until_done`), is regenerated.
    """
    h, w = spec["size"]
    task = spec.get("task", "objects")
    prefix = "synthetic" if task == "objects" else task
    root = cache_dir(cache) / f"{prefix}-s{spec['seed']}-{spec['train']}-{spec['val']}-{h}x{w}"
    manifest = root / "synthetic.json"
    if manifest.is_file() and not is_incomplete(root):
        try:
            stored = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:  # a torn manifest: regenerate
            stored = {}
        same = all(stored.get(k) == (list(v) if isinstance(v, tuple) else v)
                   for k, v in spec.items())
        if same and stored.get("version") == task_info(task)[2]:
            return root, False
    generate_synthetic_dataset(root, train=spec["train"], val=spec["val"], seed=spec["seed"],
                               size=tuple(spec["size"]), task=task)
    return root, True
