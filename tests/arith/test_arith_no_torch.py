"""fcnkit.arith is pure geometry: importing it (all of it) must not import torch."""

from __future__ import annotations

import fcnkit.arith


def test_import_fcnkit_arith_leaves_torch_out_of_sys_modules(fresh_check):
    # A fresh interpreter imports every fcnkit.arith module (tests/fresh_interpreter.py).
    report, _ = fresh_check("check_arith_without_torch")
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
