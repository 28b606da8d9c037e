"""Pictures: headless matplotlib (Agg), deterministic, written atomically.

Every picture module gets pyplot through :func:`pyplot` (which selects the Agg backend
before pyplot is first imported) and writes through :func:`save_figure` (atomic, closes
the figure, fixed metadata so that the same input gives the same bytes).
"""

from __future__ import annotations

import os
from typing import Any

from fcnkit.atomic import atomic_path


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` with the non-interactive Agg backend selected."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Save ``fig`` to ``path`` atomically and close it.

    PNG metadata is fixed (no software/date stamp) so that output is byte-for-byte
    reproducible for the same input.
    """
    plt = pyplot()
    suffix = os.fspath(path).lower().rsplit(".", 1)[-1]
    metadata = {"Software": None} if suffix == "png" else None
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, metadata=metadata, bbox_inches="tight")
    finally:
        plt.close(fig)
