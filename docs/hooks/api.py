"""mkdocs hook: the API reference pages, one per package, generated at build time.

``api/PACKAGE.md`` gets a mkdocstrings block for the package and one for each of its
modules, listed from ``src/`` when the site is built, so that a module added or removed
never leaves the reference stale or broken. mkdocstrings renders the docstrings of the
public symbols (``__all__`` where a module has one, else every non-underscore name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

SRC = Path(__file__).resolve().parents[2] / "src" / "fcnkit"
PACKAGES = {
    "arith": "Convolution arithmetic: sizes, the matrix C, receptive fields, gridding "
             "(numpy only, never imports torch).",
    "models": "Backbones, heads, FCN-32s/16s/8s, the d2l and dilated FCNs, surgery, weights.",
    "data": "Datasets (synthetic, VOC, Cityscapes, ADE20K, folders), transforms, palettes.",
    "metrics": "Confusion matrix, IoU and boundary metrics.",
    "training": "The training loop, its configuration, recipe, run directory and log.",
    "inference": "Labels, evaluation, prediction, backends and export.",
    "runtime": "Device, precision, distributed set-up and checkpoints.",
}


def api_page(name: str) -> str:
    """The markdown of ``api/NAME.md``."""
    lines = [f"# fcnkit.{name}", "", PACKAGES[name], ""]
    if not (SRC / name).is_dir():
        return "\n".join([*lines, f"::: fcnkit.{name}", ""])
    # The package itself: its docstring (its names are documented where they are defined).
    lines += [f"::: fcnkit.{name}", "    options:", "      members: false", ""]
    for module in sorted((SRC / name).glob("*.py")):
        if module.stem.startswith("_"):
            continue
        lines += [f"## fcnkit.{name}.{module.stem}", "", f"::: fcnkit.{name}.{module.stem}",
                  "    options:", "      show_root_heading: false", ""]
    return "\n".join(lines)


def on_files(files: Files, config: Any) -> Files:
    """Add the generated ``api/*.md`` pages."""
    for name in PACKAGES:
        files.append(File.generated(config, f"api/{name}.md", content=api_page(name)))
    return files
