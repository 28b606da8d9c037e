"""The one fresh interpreter of the test session (fixture ``fresh_interpreter``, tests/conftest.py).

Some facts only show in a process that has not imported anything yet: which modules an import
loads, whether torch was imported at all, a warning PyTorch prints once per process. Instead
of one interpreter per such check, ``python tests/fresh_interpreter.py WORKDIR`` starts once,
and runs each check in a child forked from a clean state (nothing of fcnkit imported; torch
imported only for the checks that need it, after those that must not see it). Each check's
stdout and stderr are captured. It prints one JSON object: check name -> {"value": ..., "error":
traceback or None, "stdout": ..., "stderr": ...}; the tests assert on it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path


def _fcnkit_modules() -> list[str]:
    return sorted(m for m in sys.modules if m == "fcnkit" or m.startswith("fcnkit."))


def check_arith_without_torch(workdir: Path) -> dict:
    """Import every module of fcnkit.arith: is torch in sys.modules afterwards?"""
    import importlib
    import pkgutil

    import fcnkit.arith

    names = [m.name for m in pkgutil.iter_modules(fcnkit.arith.__path__)]
    for name in names:
        importlib.import_module(f"fcnkit.arith.{name}")
    return {"torch": "torch" in sys.modules, "modules": names}


def check_cli_conv_without_torch(workdir: Path) -> dict:
    """Build the CLI's parser and run ``fcnkit conv``: is torch imported?"""
    from fcnkit.cli import main

    code = main(["conv", "--size", "5", "--kernel", "3", "--json"])
    return {"code": code, "torch": "torch" in sys.modules}


def check_models_imports(workdir: Path) -> dict:
    """``import fcnkit.models``: the fcnkit modules it loads."""
    import fcnkit.models  # noqa: F401

    return {"fcnkit": _fcnkit_modules()}


def check_predict_warnings(workdir: Path) -> dict:
    """predict_paths on a PNG with a 1x1 conv: what it prints (PyTorch warns once per process,
    e.g. about non-writable arrays, so only a fresh process shows it)."""
    import numpy as np
    import torch
    from PIL import Image

    from fcnkit.inference.predict import predict_paths

    src, out = workdir / "predict_in", workdir / "predict_out"
    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(src / "a.png")
    model = torch.nn.Conv2d(3, 3, 1)
    predict_paths(model, [str(src)], str(out), palette=[(0, 0, 0), (1, 2, 3), (4, 5, 6)],
                  overlay=True)
    return {"written": sorted(p.name for p in out.iterdir())}


#: Checks that must not see torch imported run first, from the bare interpreter; torch is
#: then imported once here so the others' children inherit it (their facts are about fcnkit).
WITHOUT_TORCH = [check_arith_without_torch, check_cli_conv_without_torch]
WITH_TORCH = [check_models_imports, check_predict_warnings]


def _in_child(check, workdir: Path) -> dict:
    """Run ``check`` in a forked child with its own stdout/stderr files; its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: os.path.join(tmp, name) for name in ("result", "stdout", "stderr")}
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            try:
                for fd, name in ((1, "stdout"), (2, "stderr")):
                    os.dup2(os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
                try:
                    result = {"value": check(workdir), "error": None}
                except BaseException:  # noqa: BLE001 - reported to the test
                    result = {"value": None, "error": traceback.format_exc()}
                sys.stdout.flush()
                sys.stderr.flush()
                Path(paths["result"]).write_text(json.dumps(result))
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        result_path = Path(paths["result"])
        result = (json.loads(result_path.read_text()) if result_path.exists()
                  else {"value": None, "error": "the check's child died"})
        for name in ("stdout", "stderr"):
            path = Path(paths[name])
            result[name] = path.read_text(errors="replace") if path.exists() else ""
        return result


def main(workdir: str) -> None:
    root = Path(workdir)
    results = {}
    for check in WITHOUT_TORCH:
        results[check.__name__] = _in_child(check, root)
    import torch  # noqa: F401  (once, for the checks below)

    for check in WITH_TORCH:
        results[check.__name__] = _in_child(check, root)
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
