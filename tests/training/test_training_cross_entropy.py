"""summed_cross_entropy against torch's own F.cross_entropy: values and gradients of the
one-node loss (channels_last, at least SHORT_ROWS classes) in every dtype the training
step produces, ignored pixels, weights; which cases take it; and the mechanism (no layout
copy of channels_last logits). Every test runs twice: with the compiled loss
(``_cross_entropy.c``) where a C compiler is present, and with the torch operations
(``FCNKIT_NATIVE=0``)."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.profiler import ProfilerActivity, profile

from fcnkit.constants import IGNORE_INDEX
from fcnkit.training import cross_entropy
from fcnkit.training.cross_entropy import COMPILED_ROWS, SHORT_ROWS, summed_cross_entropy

#: Enough classes for the one-node loss.
LONG = SHORT_ROWS + 1


@pytest.fixture(autouse=True, params=["compiled", "torch operations"])
def implementation(request, monkeypatch):
    """The one-node loss compiled, or as torch operations (the library looked up again
    before and after the test: it is cached per process)."""
    if request.param == "compiled" and shutil.which("cc") is None:
        pytest.skip("no C compiler")
    if request.param == "torch operations":
        monkeypatch.setenv("FCNKIT_NATIVE", "0")
    cross_entropy._library.cache_clear()
    yield request.param
    cross_entropy._library.cache_clear()


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
    """Counts the calls of the one-node loss, compiled (1) or as torch operations (2)."""
    calls: list[int] = []
    for tag, node in ((1, cross_entropy._NativeCrossEntropy),
                      (2, cross_entropy._ClassLastCrossEntropy)):
        def counting(*args, real=node.apply, tag=tag):
            calls.append(tag)
            return real(*args)

        monkeypatch.setattr(node, "apply", counting)
    return calls


def _node(implementation: str) -> int:
    return 1 if implementation == "compiled" else 2


@pytest.mark.parametrize("weighted", [False, True])
def test_fp32_matches_torch_values_and_gradients(weighted: bool, monkeypatch,
                                                 implementation) -> None:
    calls = _one_node_calls(monkeypatch)
    logits, masks, weight = _case(0, (3, LONG, 9, 11))
    _assert_matches_torch(_channels_last(logits), masks, weight if weighted else None)
    assert calls == [_node(implementation)]


@pytest.mark.parametrize("shape, layout, compiled, torch_node", [
    ((2, LONG, 5, 6), "nchw", False, False),            # torch's loss reads NCHW in place
    ((2, COMPILED_ROWS - 1, 5, 6), "channels_last", False, False),  # short rows
    ((2, COMPILED_ROWS, 5, 6), "channels_last", True, False),  # compiled: blocks of pixels
    ((2, SHORT_ROWS - 1, 5, 6), "channels_last", True, False),  # torch's is faster
    ((2, SHORT_ROWS, 5, 6), "channels_last", True, True),
    ((2, LONG, 13), "channels_last", True, True),       # (N, C, L) sequences
    ((2, LONG, 3, 4, 5), "channels_last", True, True),  # volumes, channels_last_3d
    ((2, 4, 3, 4, 5), "channels_last", False, False),
])
def test_which_cases_take_the_one_node_loss(shape, layout, compiled, torch_node, monkeypatch,
                                            implementation) -> None:
    calls = _one_node_calls(monkeypatch)
    logits, masks, weight = _case(6, shape)
    if layout == "channels_last":
        logits = _channels_last(logits)
    _assert_matches_torch(logits, masks, weight)
    one_node = compiled if implementation == "compiled" else torch_node
    assert calls == ([_node(implementation)] if one_node else [])


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_half_and_double_logits_take_the_torch_operations(dtype, monkeypatch) -> None:
    """The compiled loss reads float32 and bf16 only."""
    calls = _one_node_calls(monkeypatch)
    logits, masks, weight = _case(7, (2, LONG, 4, 5))
    x = _channels_last(logits.to(dtype)).requires_grad_()
    summed_cross_entropy(x, masks, weight).backward()
    assert calls == [2] and x.grad is not None and x.grad.dtype == dtype


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_loss_split_over_threads_is_the_loss_on_one(dtype, implementation) -> None:
    """8192 pixels: two threads for the compiled loss. The gradient of a pixel does not
    depend on the split (bit for bit); the loss is its sum in another order."""
    logits, masks, weight = _case(9, (2, 21, 64, 64))
    logits = logits.to(dtype).contiguous(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two, two_grad = _loss_and_grad(summed_cross_entropy, logits, masks, weight)
        torch.set_num_threads(1)
        one, one_grad = _loss_and_grad(summed_cross_entropy, logits, masks, weight)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(two_grad, one_grad)
    torch.testing.assert_close(two, one, rtol=1e-6, atol=0)
    ref, _ = _loss_and_grad(_torch, logits, masks, weight)
    torch.testing.assert_close(two, ref, rtol=1e-5, atol=0)


def test_a_nan_score_of_a_labelled_pixel_makes_the_loss_nan_as_in_torch() -> None:
    logits, masks, _ = _case(10, (1, LONG, 3, 3), ignored=0.0)
    logits[0, 5, 1, 1] = float("nan")
    logits = _channels_last(logits)
    ours, our_grad = _loss_and_grad(summed_cross_entropy, logits, masks, None)
    ref, ref_grad = _loss_and_grad(_torch, logits, masks, None)
    assert torch.isnan(ours) and torch.isnan(ref)
    # Only that pixel's gradient is NaN, in both.
    assert torch.equal(our_grad.isnan(), ref_grad.isnan())
    assert our_grad.isnan().sum() == LONG


def test_the_compiled_loss_names_the_bad_target(implementation) -> None:
    if implementation != "compiled":
        pytest.skip("the message of the compiled loss")
    logits = _channels_last(torch.randn(1, LONG, 2, 2)).requires_grad_()
    masks = torch.tensor([[[0, 1], [-1, 2]]])
    with pytest.raises(IndexError, match=f"Target -1 is out of bounds.*{LONG} classes"):
        summed_cross_entropy(logits, masks, None)


def test_native_status_says_which_loss_runs(implementation) -> None:
    status = cross_entropy.native_status()
    if implementation == "compiled":
        assert status.startswith("compiled (") and "fcnkit_cross_entropy_" in status
    else:
        assert status == "off (FCNKIT_NATIVE=0): torch operations"


def test_a_run_banner_names_the_loss_only_where_there_is_a_choice(implementation) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    described = cross_entropy.describe(21, cpu, channels_last=True)
    if implementation == "compiled":
        assert described == "loss compiled"
    else:
        assert described == "loss as torch operations (off (FCNKIT_NATIVE=0))"
    assert cross_entropy.describe(COMPILED_ROWS - 1, cpu, channels_last=True) == ""
    assert cross_entropy.describe(21, cpu, channels_last=False) == ""
    assert cross_entropy.describe(21, cuda, channels_last=True) == ""
