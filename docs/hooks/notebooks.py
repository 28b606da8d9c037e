"""mkdocs hook: each tutorial notebook becomes a page, rendered at build time.

``docs/tutorials/NAME.ipynb`` (stored without outputs) is turned into a generated
``tutorials/NAME.md``: markdown cells as they are, code cells as ``python`` blocks, and a
link to the notebook itself, which stays in the site for download. Only the standard
library reads the notebook (it is JSON), so the build needs neither nbconvert nor a kernel
and works offline; ``tests/test_notebooks.py`` executes the notebooks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files


def notebook_markdown(path: Path) -> str:
    """The markdown page of one notebook (its cells in order, code fenced)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            parts.append(source)
        elif cell["cell_type"] == "code":
            parts.append(f"```python\n{source}\n```")
    head, *rest = parts
    link = (f"*This page is the notebook [`{path.name}`]({path.name}): download it and run "
            "it cell by cell (`pip install 'fcnkit[docs]'` brings Jupyter's kernel).*")
    return "\n\n".join([head, link, *rest]) + "\n"


def on_files(files: Files, config: Any) -> Files:
    """Add one generated page per ``tutorials/*.ipynb``."""
    for nb_file in [f for f in files if f.src_uri.endswith(".ipynb")]:
        src_uri = nb_file.src_uri[: -len(".ipynb")] + ".md"
        content = notebook_markdown(Path(nb_file.abs_src_path))
        files.append(File.generated(config, src_uri, content=content))
    return files
