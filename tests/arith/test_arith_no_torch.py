"""fcnkit.arith is pure geometry: importing it (all of it) must not import torch."""

from __future__ import annotations

import json
import subprocess
import sys

import fcnkit.arith


def test_import_fcnkit_arith_leaves_torch_out_of_sys_modules():
    code = (
        "import json, sys, pkgutil, importlib, fcnkit.arith\n"
        "mods = [m.name for m in pkgutil.iter_modules(fcnkit.arith.__path__)]\n"
        "for m in mods: importlib.import_module('fcnkit.arith.' + m)\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'modules': mods}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"sizes", "matrix", "kernels"} <= set(report["modules"])
    assert report["torch"] is False, "some fcnkit.arith module imports torch"


def test_public_names_are_exported():
    for name in (
        "conv_output_size",
        "conv_transpose_output_size",
        "pool_output_size",
        "output_padding_for",
        "same_padding",
        "upsampling_recipe",
        "transposed_equivalent",
        "effective_kernel",
        "conv_matrix",
        "conv2d",
        "conv_transpose2d",
        "conv_transpose_via_matrix",
        "correlate2d",
        "convolve2d",
        "zero_insert",
        "bilinear_kernel",
    ):
        assert name in fcnkit.arith.__all__
        assert callable(getattr(fcnkit.arith, name))
