"""Claim ``matrix``: a convolution is a matrix C, and the transposed convolution is Cᵀ.

Dumoulin & Visin, "A guide to convolution arithmetic for deep learning" (2016), §4.1: a
convolution unrolled as a sparse matrix C maps the flattened input to the flattened
output, and the transposed convolution is multiplication by Cᵀ. fcnkit builds C with
:func:`fcnkit.arith.matrix.conv_matrix`; PyTorch (``F.conv2d``, ``F.conv_transpose2d``)
is the oracle. Inputs and weights are small integers in float64, so every sum is exact and
the check is equality, not closeness.

The seed walkthrough of C and Cᵀ (source material 000, "FCN and transposed convolution")
prints four PyTorch results; :data:`SEED_PRINTOUTS` holds them as printed. fcnkit's C / Cᵀ
products are checked against PyTorch on the same inputs, and each printout is shown next
to the right result: three are right, and the stride-2 transposed convolution's printout
is not what ``F.conv_transpose2d`` returns (it reads as the four scaled kernels laid out
column-first: ``[[5, 10, 6, 12], …]`` against ``[[5, 6, 10, 12], [7, 8, 14, 16], …]``).
That is the seed's error, listed as such; it does not count against the claim, whose
subject is fcnkit's matrices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fcnkit.arith.matrix import conv_matrix, conv_transpose_via_matrix
from fcnkit.arith.sizes import conv_output_size, output_padding_for
from fcnkit.reproduce.runner import ReproduceConfig, describe, markdown_table, write_outputs

CLAIM = "A convolution equals multiplication by its sparse matrix C, and the transposed " \
        "convolution (same weights) equals multiplication by Cᵀ, exactly."

# Worked examples with published numbers:
# d2l.ai §7.2 (cross-correlation): X = arange(9).reshape(3, 3), K = [[0, 1], [2, 3]]
#   -> [[19, 25], [37, 43]];
# d2l.ai §14.10 (transposed convolution): X = [[0, 1], [2, 3]], K = [[0, 1], [2, 3]]
#   -> [[0, 0, 1], [0, 4, 6], [4, 12, 9]].
WORKED = [
    {"name": "d2l 7.2 corr2d", "kind": "conv", "x": np.arange(9.0).reshape(3, 3),
     "k": np.array([[0.0, 1.0], [2.0, 3.0]]), "published": [[19, 25], [37, 43]],
     "stride": 1, "padding": 0, "dilation": 1},
    {"name": "d2l 14.10 trans_conv", "kind": "transposed", "x": np.array([[0.0, 1.0],
     [2.0, 3.0]]), "k": np.array([[0.0, 1.0], [2.0, 3.0]]),
     "published": [[0, 0, 1], [0, 4, 6], [4, 12, 9]], "stride": 1, "padding": 0,
     "dilation": 1},
]


# Source material 000's printouts, as printed (X, kernel, operation, stride, padding,
# printed result); X and the kernel are 1×1-channel maps.
SEED_PRINTOUTS = [
    {"name": "000 conv2d 4×4 * 3×3", "kind": "conv", "x": np.arange(16.0).reshape(4, 4),
     "k": np.arange(9.0).reshape(3, 3), "stride": 1, "padding": 0,
     "printed": [[258, 294], [402, 438]]},
    {"name": "000 conv_transpose2d stride 2", "kind": "transposed",
     "x": np.array([[1.0, 2.0], [3.0, 4.0]]), "k": np.array([[5.0, 6.0], [7.0, 8.0]]),
     "stride": 2, "padding": 0,
     "printed": [[5, 10, 6, 12], [15, 20, 18, 24], [7, 14, 8, 16], [21, 28, 24, 32]]},
    {"name": "000 conv_transpose2d stride 1", "kind": "transposed",
     "x": np.array([[1.0, 2.0], [3.0, 4.0]]), "k": np.array([[5.0, 6.0], [7.0, 8.0]]),
     "stride": 1, "padding": 0, "printed": [[5, 16, 12], [22, 60, 40], [21, 52, 32]]},
    {"name": "000 conv_transpose2d stride 1 padding 1", "kind": "transposed",
     "x": np.array([[1.0, 2.0], [3.0, 4.0]]), "k": np.array([[5.0, 6.0], [7.0, 8.0]]),
     "stride": 1, "padding": 1, "printed": [[60]]},
]


def seed_printouts() -> list[dict[str, Any]]:
    """Each seed printout next to fcnkit's C x or Cᵀ y and PyTorch's result."""
    rows = []
    for ex in SEED_PRINTOUTS:
        w, s, p = ex["k"][None, None], ex["stride"], ex["padding"]
        if ex["kind"] == "conv":
            torch_out = _torch_conv(ex["x"][None], w, s, p, 1)[0]
            c = conv_matrix((1, *ex["x"].shape), w, s, p)
            got = (c @ ex["x"].ravel()).reshape(torch_out.shape)
        else:
            torch_out = _torch_conv_t(ex["x"][None], w, s, p, 1, 0)[0]
            got = conv_transpose_via_matrix(ex["x"][None], w, s, p)[0]
        printed = np.asarray(ex["printed"], dtype=np.float64)
        rows.append({"name": ex["name"], "printed": ex["printed"],
                     "pytorch": torch_out.tolist(), "fcnkit": got.tolist(),
                     "fcnkit_equal": bool(np.array_equal(got, torch_out)),
                     "seed_right": bool(printed.shape == torch_out.shape
                                        and np.array_equal(printed, torch_out))})
    return rows


def _torch_conv(x: np.ndarray, w: np.ndarray, s, p, d) -> np.ndarray:
    return F.conv2d(torch.from_numpy(x)[None], torch.from_numpy(w), stride=s, padding=p,
                    dilation=d)[0].numpy()


def _torch_conv_t(y: np.ndarray, w: np.ndarray, s, p, d, a) -> np.ndarray:
    return F.conv_transpose2d(torch.from_numpy(y)[None], torch.from_numpy(w), stride=s,
                              padding=p, dilation=d, output_padding=a)[0].numpy()


def check_configuration(rng, c_in: int, c_out: int, size: tuple[int, int], k: int, s: int,
                        p: int, d: int) -> dict[str, Any]:
    """C x == conv2d(x) and Cᵀ y == conv_transpose2d(y) for one geometry (exact)."""
    x = rng.integers(-3, 4, size=(c_in, *size)).astype(np.float64)
    w = rng.integers(-3, 4, size=(c_out, c_in, k, k)).astype(np.float64)
    c = conv_matrix(x.shape, w, s, p, d)
    direct = _torch_conv(x, w, s, p, d)
    conv_ok = bool(np.array_equal((c @ x.ravel()).reshape(direct.shape), direct))
    y = rng.integers(-3, 4, size=direct.shape).astype(np.float64)
    # output_padding that makes the transposed output the conv's input size again
    a = tuple(output_padding_for(conv_output_size(size, k, s, p, d), size, k, s, p, d))
    transposed = _torch_conv_t(y, w, s, p, d, a)
    t_ok = bool(np.array_equal((c.T @ y.ravel()).reshape(transposed.shape), transposed))
    return {"c_in": c_in, "c_out": c_out, "size": list(size), "kernel": k, "stride": s,
            "padding": p, "dilation": d, "output_padding": list(a),
            "matrix_shape": list(c.shape), "conv_equal": conv_ok, "transposed_equal": t_ok}


def random_configurations(rng, count: int) -> list[dict[str, Any]]:
    out = []
    while len(out) < count:
        k, s, d = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
        p = int(rng.integers(0, k))
        size = (int(rng.integers(4, 11)), int(rng.integers(4, 11)))
        span = d * (k - 1) + 1
        if min(size) + 2 * p < span:
            continue  # no output: not a valid convolution
        out.append(check_configuration(rng, int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                                       size, k, s, p, d))
    return out


def run(config: ReproduceConfig) -> dict[str, Any]:
    worked = []
    for ex in WORKED:
        w = ex["k"][None, None]
        if ex["kind"] == "conv":
            c = conv_matrix((1, *ex["x"].shape), w)
            got = (c @ ex["x"].ravel()).reshape(_torch_conv(ex["x"][None], w, 1, 0, 1).shape)
        else:
            got = conv_transpose_via_matrix(ex["x"][None], w)
        got = got[0]
        worked.append({"name": ex["name"], "fcnkit": got.tolist(), "published": ex["published"],
                       "equal": bool(np.array_equal(got, np.asarray(ex["published"])))})
    seeds = seed_printouts()
    rng = np.random.default_rng(0)
    randoms = random_configurations(rng, 30 if config.quick else 100)
    passed = all(w["equal"] for w in worked) and all(
        r["conv_equal"] and r["transposed_equal"] for r in randoms) and all(
        r["fcnkit_equal"] for r in seeds)
    seed_errors = [r["name"] for r in seeds if not r["seed_right"]]
    n_ok = sum(r["conv_equal"] and r["transposed_equal"] for r in randoms)
    results = {
        "claim": "matrix", "claim_text": CLAIM, "config": describe(config, None),
        "worked_examples": worked, "seed_printouts": seeds, "seed_errors": seed_errors,
        "random": randoms,
        "verdict": "reproduced" if passed else "not reproduced",
        "verdict_reason": f"{sum(w['equal'] for w in worked)}/{len(worked)} worked examples, "
                          f"{sum(r['fcnkit_equal'] for r in seeds)}/{len(seeds)} of the "
                          f"seed's examples and {n_ok}/{len(randoms)} random geometries "
                          "(stride, padding, dilation, channels) equal PyTorch exactly; "
                          f"the seed's own printout is wrong in {len(seed_errors)} of "
                          f"{len(seeds)} ({', '.join(seed_errors) or 'none'})",
    }
    rows = [[w["name"], w["published"], w["fcnkit"], "yes" if w["equal"] else "NO"]
            for w in worked]
    table = markdown_table(["worked example", "published", "fcnkit (C or Cᵀ)", "equal"], rows)
    table += "\n" + markdown_table(
        ["seed 000's example", "printed in the seed", "PyTorch", "fcnkit (C or Cᵀ)",
         "fcnkit = PyTorch", "seed"],
        [[r["name"], r["printed"], r["pytorch"], r["fcnkit"],
          "yes" if r["fcnkit_equal"] else "NO",
          "right" if r["seed_right"] else "**the seed's error**"] for r in seeds])
    table += "\n" + markdown_table(
        ["random geometries", "C x = conv2d", "Cᵀ y = conv_transpose2d"],
        [[len(randoms), sum(r["conv_equal"] for r in randoms),
          sum(r["transposed_equal"] for r in randoms)]])
    write_outputs(Path(config.out), results, table)
    results["table"] = table
    return results
