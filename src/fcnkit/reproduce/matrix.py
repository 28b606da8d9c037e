"""Claim ``matrix``: a convolution is a matrix C, and the transposed convolution is Cᵀ.

Dumoulin & Visin, "A guide to convolution arithmetic for deep learning" (2016), §4.1: a
convolution unrolled as a sparse matrix C maps the flattened input to the flattened
output, and the transposed convolution is multiplication by Cᵀ. fcnkit builds C with
:func:`fcnkit.arith.matrix.conv_matrix`; PyTorch (``F.conv2d``, ``F.conv_transpose2d``)
is the oracle. Inputs and weights are small integers in float64, so every sum is exact and
the check is equality, not closeness.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

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


def _torch_conv(x: np.ndarray, w: np.ndarray, s, p, d) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    return F.conv2d(torch.from_numpy(x)[None], torch.from_numpy(w), stride=s, padding=p,
                    dilation=d)[0].numpy()


def _torch_conv_t(y: np.ndarray, w: np.ndarray, s, p, d, a) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    return F.conv_transpose2d(torch.from_numpy(y)[None], torch.from_numpy(w), stride=s,
                              padding=p, dilation=d, output_padding=a)[0].numpy()


def check_configuration(rng, c_in: int, c_out: int, size: tuple[int, int], k: int, s: int,
                        p: int, d: int) -> dict[str, Any]:
    """C x == conv2d(x) and Cᵀ y == conv_transpose2d(y) for one geometry (exact)."""
    from fcnkit.arith.matrix import conv_matrix
    from fcnkit.arith.sizes import conv_output_size, output_padding_for

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
    from fcnkit.arith.matrix import conv_matrix, conv_transpose_via_matrix

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
    rng = np.random.default_rng(0)
    randoms = random_configurations(rng, 30 if config.quick else 100)
    passed = all(w["equal"] for w in worked) and all(
        r["conv_equal"] and r["transposed_equal"] for r in randoms)
    n_ok = sum(r["conv_equal"] and r["transposed_equal"] for r in randoms)
    results = {
        "claim": "matrix", "claim_text": CLAIM, "config": describe(config, None),
        "worked_examples": worked, "random": randoms,
        "verdict": "reproduced" if passed else "not reproduced",
        "verdict_reason": f"{sum(w['equal'] for w in worked)}/{len(worked)} worked examples "
                          f"and {n_ok}/{len(randoms)} random geometries (stride, padding, "
                          "dilation, channels) equal PyTorch exactly",
    }
    rows = [[w["name"], w["published"], w["fcnkit"], "yes" if w["equal"] else "NO"]
            for w in worked]
    table = markdown_table(["worked example", "published", "fcnkit (C or Cᵀ)", "equal"], rows)
    table += "\n" + markdown_table(
        ["random geometries", "C x = conv2d", "Cᵀ y = conv_transpose2d"],
        [[len(randoms), sum(r["conv_equal"] for r in randoms),
          sum(r["transposed_equal"] for r in randoms)]])
    write_outputs(Path(config.out), results, table)
    results["table"] = table
    return results
