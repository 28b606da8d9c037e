"""``--precision auto`` chooses by measuring the model: the decision rule, the cache key,
the cache file (round trip, corrupt file) — with injected timings, never real ones."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from fcnkit.models.heads import GroupedBilinear
from fcnkit.runtime import precision as P


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())


def fake_measure(fp32_s: list[float], bf16_s: list[float], calls: list):
    """A ``measure`` that returns given seconds and records which dtype was asked for."""

    def measure(model, x, dtype, runs, timer, warmup):
        calls.append((dtype, warmup, model.training))
        source = fp32_s if dtype is None else bf16_s
        done = sum(1 for c in calls[:-1] if c[0] == dtype)
        return [source[done % len(source)]] * runs

    return measure


def test_choose_needs_the_margin_on_the_median() -> None:
    # medians: fp32 10, bf16 9.6 -> 4 % faster, below the 5 % margin -> fp32
    assert P.choose_by_timings([10, 10, 10], [9.4, 9.6, 30])[0] == "fp32"
    # bf16 9.5 is exactly 5 % faster: chosen; one slow outlier does not move the median
    assert P.choose_by_timings([10, 10, 10], [9.5, 9.5, 100])[0] == "bf16"
    assert P.choose_by_timings([10, 10, 10], [11, 11, 1])[0] == "fp32"
    name, reason = P.choose_by_timings([2.0] * 5, [1.0] * 5)
    assert name == "bf16" and "2.00x" in reason and "median of 5" in reason
    assert P.choose_by_timings([1.0], [1.0], margin=0.0)[0] == "bf16"


def test_time_forward_uses_the_injected_timer() -> None:
    ticks = itertools.count(0.0, 0.5)  # every call of the timer advances 0.5 s
    times = P.time_forward(tiny_model().eval(), torch.zeros(1, 3, 8, 8), None, 3,
                           lambda: next(ticks))
    assert times == [0.5, 0.5, 0.5]
    calls = []
    model = tiny_model().eval()
    model.register_forward_hook(lambda *a: calls.append(1))
    P.time_forward(model, torch.zeros(1, 3, 8, 8), torch.bfloat16, 2, lambda: 0.0,
                   warmup=False)
    assert len(calls) == 2  # no warm-up pass


def test_cpu_signature_and_cache_key() -> None:
    info = ("processor : 0\nmodel name : Test CPU 9000\nflags : fpu avx2 amx_tile avx512_bf16"
            " sse\n\nprocessor : 1\nmodel name : Other\nflags : fpu\n")
    assert P.cpu_signature(info) == "Test CPU 9000 [amx_tile avx2 avx512_bf16]"
    key = P.calibration_key("M:abc", "Test CPU", "2.5.0", channels_last=True)
    assert key != P.calibration_key("M:abc", "Test CPU", "2.5.0", channels_last=False)
    assert key != P.calibration_key("M:abd", "Test CPU", "2.5.0", channels_last=True)
    assert key != P.calibration_key("M:abc", "Test CPU", "2.6.0", channels_last=True)
    assert key != P.calibration_key("M:abc", "Other CPU", "2.5.0", channels_last=True)
    # the model part depends on the architecture, not on the weights' values
    a, b = tiny_model(), tiny_model()
    assert P.model_signature(a) == P.model_signature(b)
    assert P.model_signature(a) != P.model_signature(nn.Conv2d(3, 5, 3))
    # ... and on what the modules run: same state dict, another class, another key
    # (a cache written before the upsamplers ran in float32 is not reused).
    plain = nn.Sequential(nn.ConvTranspose2d(3, 3, 4, stride=2, groups=3, bias=False))
    grouped = nn.Sequential(GroupedBilinear(3, 3, 4, stride=2, groups=3, bias=False))
    assert list(plain.state_dict()) == list(grouped.state_dict())
    assert P.model_signature(plain) != P.model_signature(grouped)


def test_calibration_measures_once_then_reads_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "sub" / "precision.json"
    model = tiny_model().train()
    calls: list = []
    chosen = P.calibrate_precision(model, cache_path=cache, runs=3,
                                   measure=fake_measure([3.0] * 3, [1.0] * 3, calls))
    assert chosen.name == "bf16" and chosen.dtype == torch.bfloat16
    # alternating, one warm-up pass per precision in the first round only
    assert [(c[0], c[1]) for c in calls] == [(None, True), (torch.bfloat16, True),
                                             (None, False), (torch.bfloat16, False)] + [
                                             (None, False), (torch.bfloat16, False)]
    assert all(not training for _, _, training in calls)  # measured in eval mode
    assert model.training  # and the mode restored
    data = json.loads(cache.read_text())
    assert data["format"] == P.PRECISION_CACHE_FORMAT and len(data["entries"]) == 1
    # second call: no measurement, same choice, the reason says it came from the cache
    again = P.calibrate_precision(model, cache_path=cache,
                                  measure=fake_measure([1.0], [1.0], calls))
    assert len(calls) == 6 and again.name == "bf16" and "cached" in again.reason
    # another layout is another key: measured again, and the file keeps both entries
    slow = P.calibrate_precision(model, cache_path=cache, channels_last=True, runs=3,
                                 measure=fake_measure([1.0] * 3, [1.2] * 3, calls))
    assert slow.name == "fp32" and slow.dtype is None and len(calls) == 12
    assert len(json.loads(cache.read_text())["entries"]) == 2


@pytest.mark.parametrize("content", ["{not json", '{"format": "other", "entries": {}}',
                                     '{"format": "fcnkit-precision-cache/1", "entries": '
                                     '{"k": {"choice": "fp8", "reason": "x"}}}', "[]"])
def test_corrupt_cache_is_ignored_with_a_warning_and_rewritten(tmp_path: Path,
                                                               content: str) -> None:
    cache = tmp_path / "precision.json"
    cache.write_text(content)
    calls: list = []
    with pytest.warns(UserWarning, match="ignoring the precision cache"):
        chosen = P.calibrate_precision(tiny_model(), cache_path=cache, runs=1,
                                       measure=fake_measure([1.0], [2.0], calls))
    assert chosen.name == "fp32" and len(calls) == 2
    assert json.loads(cache.read_text())["format"] == P.PRECISION_CACHE_FORMAT


def test_env_var_names_the_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(P.PRECISION_CACHE_ENV, str(tmp_path / "x.json"))
    assert P.precision_cache_path() == tmp_path / "x.json"
    monkeypatch.delenv(P.PRECISION_CACHE_ENV)
    assert P.precision_cache_path() == Path.home() / ".cache" / "fcnkit" / "precision.json"


def test_auto_without_native_bf16_never_calibrates(monkeypatch) -> None:
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)

    def boom(*a, **k):
        raise AssertionError("calibrated on a CPU without native bf16")

    monkeypatch.setattr(P, "calibrate_precision", boom)
    chosen = P.resolve_precision("auto", "cpu", model=tiny_model())
    assert chosen.name == "fp32" and "no native bf16" in chosen.reason


def test_auto_with_native_bf16_calibrates_the_model(monkeypatch) -> None:
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    seen = []
    monkeypatch.setattr(P, "calibrate_precision",
                        lambda model, channels_last: seen.append(channels_last) or P.FP32)
    assert P.resolve_precision("auto", "cpu", model=tiny_model(), channels_last=True) is P.FP32
    assert seen == [True]
    assert P.resolve_precision("auto", "cpu").name == "bf16"  # no model: the CPU rule
    assert P.resolve_precision("fp32", "cpu", model=tiny_model()) is not None and seen == [True]
