"""fcnkit.runtime.native_build: C sources built on first use, cached under a key that names
what the binary depends on, and a clean None (with the reason) when they cannot be built.
The loss it builds is checked against torch's F.cross_entropy
(tests/training/test_training_cross_entropy.py); here, the build itself."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from fcnkit.runtime import native_build

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")

FLAGS = ("-O2", "-std=c99", "-shared", "-fPIC")
NATIVE_FLAGS = (*FLAGS, native_build.MARCH_NATIVE)


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv(native_build.NATIVE_CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _load(flags=NATIVE_FLAGS):
    return native_build.build_and_load("fcnkit.training", "_cross_entropy.c", "probe", flags)


@needs_compiler
def test_a_build_is_cached_whole_and_loaded_again(cache) -> None:
    library, status = _load()
    assert library is not None and library.fk_ce_abi() == 1
    built = sorted(cache.iterdir())
    assert status == f"compiled ({built[0]})"
    assert len(built) == 1 and built[0].name.startswith("probe_")  # no temporary left
    again, _ = _load()
    assert again is not None and sorted(cache.iterdir()) == built


def test_a_native_build_is_keyed_by_the_cpu(cache, monkeypatch) -> None:
    """A cache shared by two hosts (a home directory on a cluster) never hands one CPU the
    other's -march=native code; a portable build does not depend on the CPU."""
    here = native_build._target(b"int x;", "cc", NATIVE_FLAGS, "probe")
    portable = native_build._target(b"int x;", "cc", FLAGS, "probe")
    monkeypatch.setattr(native_build, "cpu_identity", lambda: "model name=another CPU")
    assert native_build._target(b"int x;", "cc", NATIVE_FLAGS, "probe") != here
    assert native_build._target(b"int x;", "cc", FLAGS, "probe") == portable
    assert native_build._target(b"int y;", "cc", FLAGS, "probe") != portable


def test_the_cpu_identity_names_its_instruction_sets() -> None:
    identity = native_build.cpu_identity()
    assert identity
    if Path("/proc/cpuinfo").exists():
        assert "flags=" in identity or "Features=" in identity


@needs_compiler
def test_a_compiler_that_refuses_march_native_builds_without_it(cache, tmp_path,
                                                                monkeypatch) -> None:
    wrapper = tmp_path / "cc"
    wrapper.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -march=native ] && exit 1; done\n'
                       f'exec {shutil.which("cc")} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CC", str(wrapper))
    library, status = _load()
    source = (native_build.resources.files("fcnkit.training")
              .joinpath("_cross_entropy.c").read_bytes())
    portable = native_build._target(source, str(wrapper), FLAGS, "probe")
    assert library is not None and status == f"compiled ({portable})"
    assert sorted(cache.iterdir()) == [portable]


@pytest.mark.parametrize(("env", "value", "reason"), [
    ("FCNKIT_NATIVE", "0", "off (FCNKIT_NATIVE=0)"),
    ("CC", "no-such-compiler-fcnkit", "no C compiler"),
    ("CC", "false", "build failed"),
])
def test_without_a_build_it_says_why(cache, monkeypatch, env, value, reason) -> None:
    monkeypatch.setenv(env, value)
    library, status = _load()
    assert library is None and status.startswith(reason)
    assert not cache.exists() or not any(cache.rglob("*.so"))  # nothing half-written
