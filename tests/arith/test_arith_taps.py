"""arith.taps: the drawn grid and kernel taps reproduce real torch convolutions (values by
the picture's sums, and which input pixels each output reads by gradient support)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fcnkit.arith.taps import INPUT, INSERTED_ZERO, PADDING, animation_cost, tap_layout
from fcnkit.errors import InputError

LAYERS = (
    st.tuples(st.integers(1, 6), st.integers(1, 6)), st.integers(1, 3), st.integers(1, 3),
    st.integers(0, 2), st.integers(1, 2), st.booleans(), st.integers(0, 2),
)


def _layout_or_skip(size, k, s, p, d, transposed, op):
    try:
        return tap_layout(size, k, s, p, d, transposed, op if transposed else 0)
    except InputError:
        assume(False)


def _torch_layer(x, w, s, p, d, transposed, op):
    if transposed:
        return F.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op, dilation=d)
    return F.conv2d(x, w, stride=s, padding=p, dilation=d)


def _evaluate(layout, x, w):
    """Compute the layer from the picture: grid values, kernel taps, one sum per position."""
    grid = np.zeros(layout.cells.shape)
    mask = layout.cells == INPUT
    grid[mask] = x.ravel()[layout.input_index[mask]]
    kernel = w[::-1, ::-1] if layout.transposed else w  # the equivalent conv flips the kernel
    oh, ow = layout.output_shape
    out = np.zeros((oh, ow))
    for oy in range(oh):
        for ox in range(ow):
            taps = layout.taps[oy, ox]
            out[oy, ox] = (grid[taps[:, 0], taps[:, 1]] * kernel.ravel()).sum()
    return out


@given(*LAYERS)
def test_layout_reproduces_torch_values(size, k, s, p, d, transposed, op):
    op = op if transposed else 0
    layout = _layout_or_skip(size, k, s, p, d, transposed, op)
    x = np.random.default_rng(0).standard_normal(size)
    w = np.random.default_rng(1).standard_normal((k, k))
    expected = _torch_layer(torch.tensor(x)[None, None], torch.tensor(w)[None, None],
                            s, p, d, transposed, op)[0, 0].numpy()
    assert layout.output_shape == expected.shape
    assert layout.positions == expected.size
    np.testing.assert_allclose(_evaluate(layout, x, w), expected, atol=1e-9)


@pytest.mark.slow  # one autograd pass per tap: seconds
@settings(max_examples=25, deadline=None)
@given(*LAYERS)
def test_taps_read_exactly_the_pixels_torch_depends_on(size, k, s, p, d, transposed, op):
    op = op if transposed else 0
    layout = _layout_or_skip(size, k, s, p, d, transposed, op)
    w = torch.rand(1, 1, k, k, dtype=torch.float64) + 0.5  # positive: no cancellation
    jac = torch.autograd.functional.jacobian(
        lambda x: _torch_layer(x, w, s, p, d, transposed, op),
        torch.zeros(1, 1, *size, dtype=torch.float64), vectorize=True)
    jac = jac.reshape(layout.positions, size[0] * size[1])
    for position in range(layout.positions):
        taps = layout.taps[position // layout.output_shape[1], position % layout.output_shape[1]]
        read = {int(layout.input_index[y, x]) for y, x in taps
                if layout.cells[y, x] == INPUT}
        assert read == set(jac[position].nonzero().flatten().tolist())


def test_zero_insertion_and_padding_cells():
    # ConvTranspose k3 s2 p1 op1 on 2x2: 1 zero between pixels, d(k-1)-p = 1 pad before,
    # 1 + op = 2 after (Dumoulin & Visin, relationship 14 / Figure 4.6).
    layout = tap_layout(2, 3, stride=2, padding=1, transposed=True, output_padding=1)
    row = layout.cells[1].tolist()
    assert row == [PADDING, INPUT, INSERTED_ZERO, INPUT, PADDING, PADDING]
    assert layout.output_shape == (4, 4) and layout.grid_stride == (1, 1)


def test_rejects_bad_geometry():
    with pytest.raises(InputError):
        tap_layout(3, 0)
    with pytest.raises(InputError, match="crop"):
        tap_layout(3, 2, padding=2, transposed=True)
    with pytest.raises(InputError, match="padding"):
        tap_layout(1, 2, padding=1, transposed=True)  # empty output
    with pytest.raises(InputError, match="transposed"):
        tap_layout(3, 3, output_padding=1)


@settings(max_examples=60, deadline=None)
@given(*LAYERS)
def test_animation_cost_counts_what_tap_layout_builds(size, k, s, p, d, transposed, op):
    # The cost is counted with plain arithmetic before anything is built; the oracle is the
    # layout itself (its frames = output positions, its cells = the drawn grid).
    geom = _layout_or_skip(size, k, s, p, d, transposed, op)
    op = op if transposed else 0
    cost = animation_cost(size, (k, k), (s, s), (p, p), (d, d), transposed, (op, op))
    assert cost == (geom.positions, geom.cells.size)


def test_animation_cost_leaves_invalid_geometry_to_tap_layout():
    assert animation_cost((4, 4), (3, 3), (0, 1), (0, 0), (1, 1), False, (0, 0)) is None
    assert animation_cost((2, 2), (5, 5), (1, 1), (0, 0), (1, 1), False, (0, 0)) is None
