"""A claim's wall time with this CPU's kernels against the same CPU held to AVX2 kernels.

Issue 20 budgets a full claim at 20 minutes on the slower, AVX2-only host. Where no such
host is at hand, this measures the part of the difference that is the instruction set:
it runs ``fcnkit reproduce CLAIM --quick`` alternately as is and with ATen and oneDNN held
to AVX2 (``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``, both read at start-up
by PyTorch and oneDNN), each in its own process on the same generated data, and prints
each pair's ratio. It cannot measure a slower clock, fewer cache or another memory system:
those are the other host's own.

Run (about 4 × 65 s for skips on 2 cores; nothing else running)::

    python benchmarks/bench_claim_isa.py --claim skips --pairs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The environment that holds ATen's dispatch and oneDNN's JIT to AVX2 kernels.
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def run_claim(claim: str, out: Path, data: str | None, env: dict[str, str]) -> float:
    """Seconds of one ``fcnkit reproduce CLAIM --quick`` in a fresh process."""
    command = [sys.executable, "-m", "fcnkit", "reproduce", claim, "--quick",
               "--out", str(out)]
    if data is not None:
        command += ["--data", data]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def capability(env: dict[str, str]) -> str:
    """ATen's CPU capability in a process started with ``env``."""
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", probe], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claim", default="skips")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    native = {k: v for k, v in os.environ.items() if k not in AVX2_ONLY}
    held = {**native, **AVX2_ONLY}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # The first run generates the task; every timed run then reads the same files.
        run_claim(args.claim, root / "warm", None, native)
        data = next((root / "warm" / "data").iterdir())
        spec = f"synth:{data}"
        pairs = []
        for i in range(args.pairs):
            native_s = run_claim(args.claim, root / f"native{i}", spec, native)
            held_s = run_claim(args.claim, root / f"avx2{i}", spec, held)
            pairs.append({"native_s": round(native_s, 1), "avx2_s": round(held_s, 1),
                          "ratio": round(held_s / native_s, 3)})
    result = {"claim": args.claim, "cpu": platform.processor() or platform.machine(),
              "capability": capability(native), "held_to": capability(held),
              "pairs": pairs,
              "median_ratio": round(statistics.median(p["ratio"] for p in pairs), 3)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"fcnkit reproduce {args.claim} --quick: {result['capability']} kernels against "
          f"the same CPU held to {result['held_to']}")
    for p in pairs:
        print(f"  {p['native_s']} s against {p['avx2_s']} s: ratio {p['ratio']}")
    print(f"median ratio (AVX2 / native): {result['median_ratio']}")


if __name__ == "__main__":
    main()
