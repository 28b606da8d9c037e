"""summed_cross_entropy against torch's own F.cross_entropy: values and gradients of the
one-node loss (channels_last, at least SHORT_ROWS classes) in every dtype the training
step produces, ignored pixels, weights; which cases take it; and the mechanism (no layout
copy of channels_last logits)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.profiler import ProfilerActivity, profile

from fcnkit.constants import IGNORE_INDEX
from fcnkit.training import cross_entropy
from fcnkit.training.cross_entropy import SHORT_ROWS, summed_cross_entropy

#: Enough classes for the one-node loss.
LONG = SHORT_ROWS + 1


def _case(seed: int, shape: tuple[int, ...], ignored: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g) * 3
    masks = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    masks[torch.rand(masks.shape, generator=g) < ignored] = IGNORE_INDEX
    weight = torch.rand(shape[1], generator=g) + 0.1
    return logits, masks, weight


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """The class axis with stride 1, for any rank (the layout of channels_last)."""
    return t.movedim(1, -1).contiguous().movedim(-1, 1)


def _loss_and_grad(fn, logits: torch.Tensor, masks, weight):
    x = logits.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    loss = fn(x, masks, weight)
    loss.backward()
    return loss.detach(), x.grad


def _torch(x, masks, weight):
    return F.cross_entropy(x.float(), masks, weight=weight, ignore_index=IGNORE_INDEX,
                           reduction="sum")


def _assert_matches_torch(logits, masks, weight, *, loss_rtol: float = 1e-6,
                          loss_atol: float = 1e-5) -> None:
    ours, our_grad = _loss_and_grad(summed_cross_entropy, logits, masks, weight)
    ref, ref_grad = _loss_and_grad(_torch, logits, masks, weight)
    torch.testing.assert_close(ours, ref, rtol=loss_rtol, atol=loss_atol)
    torch.testing.assert_close(our_grad, ref_grad, rtol=1e-5, atol=1e-6)


def _one_node_calls(monkeypatch) -> list[int]:
    """Counts the calls of the one-node loss."""
    calls: list[int] = []
    real = cross_entropy._ClassLastCrossEntropy.apply

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(cross_entropy._ClassLastCrossEntropy, "apply", counting)
    return calls


@pytest.mark.parametrize("weighted", [False, True])
def test_fp32_matches_torch_values_and_gradients(weighted: bool, monkeypatch) -> None:
    calls = _one_node_calls(monkeypatch)
    logits, masks, weight = _case(0, (3, LONG, 9, 11))
    _assert_matches_torch(_channels_last(logits), masks, weight if weighted else None)
    assert calls == [1]


@pytest.mark.parametrize("shape, layout, one_node", [
    ((2, LONG, 5, 6), "nchw", False),                   # torch's loss reads NCHW in place
    ((2, SHORT_ROWS - 1, 5, 6), "channels_last", False),  # short rows: torch's is faster
    ((2, SHORT_ROWS, 5, 6), "channels_last", True),
    ((2, LONG, 13), "channels_last", True),             # (N, C, L) sequences
    ((2, LONG, 3, 4, 5), "channels_last", True),        # volumes, channels_last_3d
    ((2, 4, 3, 4, 5), "channels_last", False),
])
def test_which_cases_take_the_one_node_loss(shape, layout, one_node, monkeypatch) -> None:
    calls = _one_node_calls(monkeypatch)
    logits, masks, weight = _case(6, shape)
    if layout == "channels_last":
        logits = _channels_last(logits)
    _assert_matches_torch(logits, masks, weight)
    assert calls == ([1] if one_node else [])


@pytest.mark.parametrize("classes", [4, 21])
def test_bf16_channels_last_gradient_stays_bf16_channels_last(classes: int) -> None:
    logits, masks, weight = _case(1, (2, classes, 16, 24))
    logits = logits.bfloat16().contiguous(memory_format=torch.channels_last)
    ours, our_grad = _loss_and_grad(summed_cross_entropy, logits, masks, weight)
    ref, ref_grad = _loss_and_grad(_torch, logits, masks, weight)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-4)
    assert our_grad.dtype == torch.bfloat16
    assert our_grad.is_contiguous(memory_format=torch.channels_last)
    # The same float32 gradient rounded once to bf16: equal but for the rare value whose
    # float32 sum lands on the other side of a bf16 rounding boundary (1 bf16 ulp).
    diff = (our_grad.float() - ref_grad.float()).abs()
    assert (diff <= ref_grad.float().abs() * 2 ** -7 + 1e-30).all()
    assert (diff == 0).float().mean() > 0.99


def test_float64_gradcheck() -> None:
    logits, masks, weight = _case(2, (2, SHORT_ROWS, 3, 4))
    x = _channels_last(logits.double()).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: summed_cross_entropy(t, masks, weight.double()), (x,))


def test_ignored_pixels_with_nan_logits_contribute_nothing() -> None:
    logits, masks, _ = _case(3, (2, LONG, 6, 6))
    logits[masks.unsqueeze(1).expand_as(logits) == IGNORE_INDEX] = float("nan")
    logits = _channels_last(logits)
    ours, our_grad = _loss_and_grad(summed_cross_entropy, logits, masks, None)
    ref, _ = _loss_and_grad(_torch, logits, masks, None)
    assert torch.isfinite(ours) and torch.isfinite(ref)
    torch.testing.assert_close(ours, ref)
    valid = (masks != IGNORE_INDEX).unsqueeze(1).expand_as(our_grad)
    assert torch.isfinite(our_grad[valid]).all()


def test_minus_infinity_scores_match_torch() -> None:
    """A class a pixel can never take (-inf score): a finite loss where the target is
    another class."""
    logits, masks, _ = _case(8, (2, LONG, 5, 6), ignored=0.0)
    masks = masks.clamp(min=1)
    logits[:, 0] = float("-inf")
    logits = _channels_last(logits)
    ours, our_grad = _loss_and_grad(summed_cross_entropy, logits, masks, None)
    ref, ref_grad = _loss_and_grad(_torch, logits, masks, None)
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(our_grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_all_ignored_is_zero_and_still_has_a_gradient() -> None:
    logits = _channels_last(torch.randn(2, LONG, 4, 4)).requires_grad_()
    loss = summed_cross_entropy(logits, torch.full((2, 4, 4), IGNORE_INDEX), None)
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) == 0.0


def test_target_out_of_range_raises_like_torch() -> None:
    logits = _channels_last(torch.randn(1, LONG, 2, 2)).requires_grad_()
    masks = torch.tensor([[[0, 1], [2, LONG + 3]]])
    with pytest.raises((RuntimeError, IndexError)):
        _torch(logits, masks, None)
    with pytest.raises((RuntimeError, IndexError)):
        summed_cross_entropy(logits, masks, None)


def test_backward_twice_with_retain_graph_gives_the_same_gradient() -> None:
    logits, masks, weight = _case(4, (2, LONG, 5, 5))
    x = _channels_last(logits).requires_grad_()
    loss = summed_cross_entropy(x, masks, weight)
    first = torch.autograd.grad(loss, x, retain_graph=True)[0]
    second = torch.autograd.grad(loss, x)[0]
    assert torch.equal(first, second)


def _full_size_copies(fn, logits: torch.Tensor, masks: torch.Tensor) -> int:
    x = logits.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn(x, masks, None).backward()
    return sum(1 for e in prof.events() if e.name in ("aten::clone", "aten::contiguous")
               and e.input_shapes and list(e.input_shapes[0]) == list(logits.shape))


def test_channels_last_logits_are_never_copied_to_another_layout() -> None:
    """The mechanism the step's speed-up comes from: torch's log_softmax copies
    channels_last logits to NCHW; the one-node loss reads them where they are."""
    logits, masks, _ = _case(5, (2, 21, 32, 48))
    logits = logits.contiguous(memory_format=torch.channels_last)
    assert _full_size_copies(_torch, logits, masks) >= 1  # the cost removed is real
    assert _full_size_copies(summed_cross_entropy, logits, masks) == 0


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(2, 40), h=st.integers(1, 7), w=st.integers(1, 7),
       ignored=st.floats(0.0, 1.0), weighted=st.booleans(), channels_last=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_property_matches_torch_over_random_shapes(n, c, h, w, ignored, weighted,
                                                   channels_last, seed) -> None:
    logits, masks, weight = _case(seed, (n, c, h, w), ignored)
    if channels_last:
        logits = _channels_last(logits)
    _assert_matches_torch(logits, masks, weight if weighted else None,
                          loss_rtol=1e-5, loss_atol=1e-4)
