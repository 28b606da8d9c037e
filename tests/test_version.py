"""One version: pyproject reads it from ``fcnkit.__version__``; ``fcnkit --version`` prints it;
the wheel carries the ``py.typed`` marker (PEP 561)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

import fcnkit
from fcnkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return read_configuration(ROOT / "pyproject.toml", expand=False)


def test_version_has_one_source_read_by_setuptools():
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fcnkit.__version__"}
    resolved = read_configuration(ROOT / "pyproject.toml", expand=True)
    assert resolved["project"]["version"] == fcnkit.__version__


def test_py_typed_marker_is_package_data():
    assert (Path(fcnkit.__file__).parent / "py.typed").is_file()
    project = _pyproject()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["fcnkit"]


def test_version_flag_prints_the_version(capsys):
    assert main(["--version"]) == 0  # returned, not raised (main never raises SystemExit)
    assert capsys.readouterr().out.strip() == f"fcnkit {fcnkit.__version__}"


def test_reading_the_version_does_not_import_torch():
    code = "import sys, fcnkit; print(fcnkit.__version__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [fcnkit.__version__, "False"]
