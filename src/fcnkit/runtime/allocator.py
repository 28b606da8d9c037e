"""Freed memory kept for the next training step instead of handed back to the kernel.

A training step allocates and frees the same large tensors every step (activations, their
gradients, the full-resolution logits). glibc's malloc serves blocks above its mmap
threshold (128 KiB, rising to at most 32 MiB) with a fresh ``mmap`` and gives them back with
``munmap`` on free, and trims the top of its heap once more than twice that threshold is
free there. The next step then touches new pages, and every first touch is a page fault in
which the kernel zeroes a page. ``benchmarks/bench_malloc.py`` (FCN-8s/ResNet-18, batch 8 ×
256², host C, a virtual machine) counted 59–79 thousand faults per step by default and
none once freed memory is kept: the step 1.18× faster in bf16 and 1.08× in fp32 (1.45× at
150 classes), the peak resident memory 2–3 % higher (26 % at 150 classes; docs/
benchmarks.md, "Freed memory kept for the next step"). PyTorch's CPU
performance guide recommends a caching allocator (jemalloc, tcmalloc) loaded with
``LD_PRELOAD`` for the same reason; this gets the effect from glibc itself, with no
package and no environment to set up.

:func:`keep_freed_memory` sets glibc's ``M_MMAP_MAX`` to 0 (every block comes from the heap,
which glibc itself falls back from to ``mmap`` only if the heap cannot grow) and
``M_TRIM_THRESHOLD`` to its maximum (2 GiB: the heap is not trimmed below that). The
process then keeps its largest footprint until it exits (a training run comes back to it
every step), and the heap's fragments are part of it: hence the higher peak.
``fcnkit train`` and ``fcnkit eval`` call it; ``fcnkit predict`` does not (on huge images
it gained 1–6 % and its peak memory rose by 118–153 MiB: ``bench_predict_memory.py
--malloc system,keep``). Set ``FCNKIT_MALLOC=system`` to
leave the C library's allocator as it is.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

from fcnkit.errors import InputError

__all__ = ["MALLOC_ENV", "keep_freed_memory"]

#: ``keep`` (the default for training) or ``system`` (the C library's own policy).
MALLOC_ENV = "FCNKIT_MALLOC"
_CHOICES = ("keep", "system")

# mallopt parameters, glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: mallopt takes an int: the largest trim threshold it can set.
_TRIM_MAX = 2**31 - 1


def _choice() -> str:
    value = os.environ.get(MALLOC_ENV, "keep").strip().lower()
    if value not in _CHOICES:
        raise InputError(f"{MALLOC_ENV}={value!r} is unknown; use {' or '.join(_CHOICES)} "
                         f"(system: the C library's allocator as it is)")
    return value


@functools.lru_cache(maxsize=1)
def _apply() -> str:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return f"system allocator ({platform.system()} {platform.libc_ver()[0] or 'libc'})"
    libc = ctypes.CDLL(None)  # the process's own symbols: glibc's malloc, the one in use
    if libc.mallopt(_M_MMAP_MAX, 0) != 1 or libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_MAX) != 1:
        return "system allocator (glibc refused mallopt)"
    return "freed memory kept (glibc)"


def keep_freed_memory() -> str:
    """Keep freed memory in the process for reuse (glibc on Linux; once per process);
    what is in effect, for the run's banner.

    Raises:
        InputError: ``FCNKIT_MALLOC`` is neither ``keep`` nor ``system``.
    """
    if _choice() == "system":
        return f"system allocator ({MALLOC_ENV}=system)"
    return _apply()
