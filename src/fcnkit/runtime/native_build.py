"""Plain C99 sources shipped in the package, built on first use and loaded with ctypes.

fcnkit's compiled helpers (the labels stage, ``fcnkit.inference._labels.c``; the training
loss, ``fcnkit.training._cross_entropy.c``) have no torch headers and no build step at
install time: the wheel stays pure Python. On first use :func:`build_and_load` compiles the
source with the system C compiler (``$CC``, else ``cc``) into ``~/.cache/fcnkit/native/``
(or ``$FCNKIT_NATIVE_CACHE``), under a name keyed by everything the binary depends on (the
source's hash, the compiler, the flags, the machine and, for ``-march=native`` builds, the
CPU's model and instruction-set flags, so a cache shared between hosts never loads code for
another CPU). Without a compiler, after a failed build, or with ``FCNKIT_NATIVE=0``, it
returns None and a sentence saying why; every caller then runs its torch implementation.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

__all__ = ["NATIVE_CACHE_ENV", "NATIVE_ENV", "build_and_load", "cache_dir", "cpu_identity"]

#: ``FCNKIT_NATIVE=0`` turns every compiled helper off (the torch implementations run).
NATIVE_ENV = "FCNKIT_NATIVE"
#: Directory for the built libraries, instead of ``~/.cache/fcnkit/native``.
NATIVE_CACHE_ENV = "FCNKIT_NATIVE_CACHE"

#: The flag that makes a build specific to this CPU (its cache key then names the CPU).
MARCH_NATIVE = "-march=native"


def cache_dir() -> Path:
    """Where built libraries are kept: ``$FCNKIT_NATIVE_CACHE``, else
    ``~/.cache/fcnkit/native``."""
    named = os.environ.get(NATIVE_CACHE_ENV)
    if named:
        return Path(named).expanduser()
    return Path.home() / ".cache" / "fcnkit" / "native"


def cpu_identity() -> str:
    """The CPU's model name and instruction-set flags (Linux ``/proc/cpuinfo``; elsewhere
    what :mod:`platform` knows): what a ``-march=native`` binary depends on."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = ("model name", "flags", "Features", "CPU part", "CPU implementer")
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
             for line in text.splitlines() if ":" in line}
    return " | ".join(f"{key}={lines[key]}" for key in wanted if key in lines)


def _compile(source: bytes, compiler: str, flags: tuple[str, ...], target: Path) -> str | None:
    """Compile ``source`` into ``target`` (written under a temporary name, then renamed, so
    concurrent processes — torchrun ranks — never load a half-written library); an error
    message or None."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        c_file = Path(work) / "source.c"
        c_file.write_bytes(source)
        built = Path(work) / target.name
        try:
            done = subprocess.run([compiler, *flags, "-o", str(built), str(c_file), "-lm"],
                                  capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{compiler} failed: {error}"
        if done.returncode != 0:
            return f"{compiler} failed: {done.stderr.strip().splitlines()[-1:]}"
        os.replace(built, target)
    return None


def _target(source: bytes, compiler: str, flags: tuple[str, ...], stem: str) -> Path:
    parts = [source, compiler.encode(), platform.machine().encode(),
             platform.python_version().encode(), " ".join(flags).encode()]
    if MARCH_NATIVE in flags:
        parts.append(cpu_identity().encode())
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    return cache_dir() / f"{stem}_{key}.so"


def _built(source: bytes, compiler: str, flags: tuple[str, ...], stem: str) -> Path | str:
    """The cached library for these flags, built if missing; or why it could not be."""
    target = _target(source, compiler, flags, stem)
    if target.exists():
        return target
    try:
        error = _compile(source, compiler, flags, target)
    except OSError as failure:  # unwritable cache directory
        error = f"cannot write {target.parent}: {failure}"
    return target if error is None else error


def build_and_load(package: str, source_name: str, stem: str,
                   flags: tuple[str, ...]) -> tuple[ctypes.CDLL | None, str]:
    """``(library, status)``: the C file ``source_name`` of ``package`` built with ``flags``
    (cached as ``<stem>_<key>.so``) and loaded; or ``(None, why)``. A build with
    ``-march=native`` that the compiler refuses is tried once more without it."""
    if os.environ.get(NATIVE_ENV, "1") == "0":
        return None, f"off ({NATIVE_ENV}=0)"
    source = resources.files(package).joinpath(source_name).read_bytes()
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None, "no C compiler (cc, or $CC)"
    built = _built(source, compiler, flags, stem)
    if isinstance(built, str) and MARCH_NATIVE in flags:
        built = _built(source, compiler, tuple(f for f in flags if f != MARCH_NATIVE), stem)
    if isinstance(built, str):
        return None, f"build failed ({built})"
    try:
        return ctypes.CDLL(str(built)), f"compiled ({built})"
    except OSError as error:
        return None, f"cannot load {built} ({error})"
