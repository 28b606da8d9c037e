"""Pictures: headless matplotlib (Agg), deterministic, written atomically.

Every picture module gets pyplot through :func:`pyplot` (which selects the Agg backend
before pyplot is first imported) and writes through :func:`save_figure` (atomic, closes
the figure, fixed metadata so that the same input gives the same bytes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fcnkit.atomic import atomic_path
from fcnkit.errors import InputError


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` with the non-interactive Agg backend selected."""
    # local: import cost (matplotlib.pyplot, ~1 s; the Agg backend is chosen first)
    import matplotlib

    matplotlib.use("Agg", force=True)
    # local: import cost (after the backend is chosen)
    import matplotlib.pyplot as plt

    return plt


def check_figure_path(path: str | os.PathLike[str]) -> str:
    """The image format of ``path`` (its suffix, lower case; ``png`` without one).

    Raises:
        InputError: matplotlib cannot write that format (one line listing those it can).
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if not suffix:
        return "png"  # matplotlib's default format (rcParams["savefig.format"])
    # local: import cost (matplotlib, ~1 s: the command line checks a path with this module)
    from matplotlib.backend_bases import FigureCanvasBase

    supported = sorted(FigureCanvasBase.get_supported_filetypes())
    if suffix not in supported:
        raise InputError(f"{path}: cannot write a .{suffix} picture; name it with one of "
                         f"the formats {', '.join('.' + s for s in supported)}")
    return suffix


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Save ``fig`` to ``path`` atomically and close it.

    PNG metadata is fixed (no software/date stamp) so that output is byte-for-byte
    reproducible for the same input.

    Raises:
        InputError: the suffix of ``path`` names a format matplotlib cannot write.
    """
    plt = pyplot()
    try:
        suffix = check_figure_path(path)
    except InputError:
        plt.close(fig)
        raise
    metadata = {"Software": None} if suffix == "png" else None
    try:
        with atomic_path(path) as tmp:
            # format= from the user's name: the temporary file's suffix is random.
            fig.savefig(tmp, format=suffix, dpi=dpi, metadata=metadata, bbox_inches="tight")
    finally:
        plt.close(fig)
