"""fcnkit.runtime.allocator: once freed memory is kept, training steps reuse it without page
faults; with glibc's default every step faults most of its large tensors' pages in anew.
Oracle: the kernel's own count of minor faults (``getrusage``), in fresh interpreters (the
allocator's policy is per process and cannot be put back once changed)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from fcnkit.errors import InputError
from fcnkit.runtime import allocator

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="glibc's mallopt on Linux")

# Five training steps of a small convolutional network (after three to warm up): the
# same tensors allocated and freed every step, as in fcnkit train.
PROBE = """
import resource, sys, torch
from fcnkit.runtime import allocator
if sys.argv[1] == "call":
    print(allocator.keep_freed_memory(), file=sys.stderr)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv2d(32, 21, 1))
x = torch.randn(4, 3, 160, 160)
def step():
    net.zero_grad(set_to_none=True)
    net(x).square().mean().backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, **env: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, check=True)
    return int(done.stdout.strip()), done.stderr.strip()


@glibc
def test_kept_memory_is_reused_without_page_faults() -> None:
    default, _ = _faults("none")
    kept, status = _faults("call")
    assert status == "freed memory kept (glibc)"
    assert kept * 10 < default, (kept, default)


@glibc
def test_fcnkit_malloc_system_leaves_the_allocator_as_it_is() -> None:
    kept, _ = _faults("call")
    system, status = _faults("call", FCNKIT_MALLOC="system")
    assert status == "system allocator (FCNKIT_MALLOC=system)"
    # Still faulting, in glibc's default regime: far above the kept policy's (1-9 thousand
    # faults against 47-170 thousand; glibc's adaptive threshold makes the default itself
    # vary by 2x between processes, so it is not the yardstick).
    assert system > 3 * kept, (system, kept)


def test_an_unknown_fcnkit_malloc_names_the_variable_and_the_choices(monkeypatch) -> None:
    monkeypatch.setenv("FCNKIT_MALLOC", "jemalloc")
    with pytest.raises(InputError, match=r"FCNKIT_MALLOC='jemalloc' is unknown; use keep or "
                                         r"system"):
        allocator.keep_freed_memory()
