"""The CLI contract harness: check a case in-process when the parser refuses it, else run
``fcnkit.cli.main(argv)`` in a forked child, bounded.

A case that argparse refuses does no work: :func:`parser_refuses` finds it (at collection
time, so its test needs no child and no ``slow`` mark) and :func:`in_process_violation`
checks ``main(argv)`` in this process: it must return 2 (not raise), with one stderr line
that names the argument. Every other case really runs, in a child:

Each case runs in a child forked from a server process that imported ``fcnkit.cli`` and
torch once (fork is cheap; a fresh interpreter per case would cost seconds). The child has
an address-space limit (so a runaway allocation fails instead of the kernel's OOM killer
taking the machine), its stdout/stderr go to files, and the parent kills it after
``timeout`` seconds. An exception escaping ``main`` is printed as a traceback and exits 1,
which the contract forbids, exactly as the console script would show it.

The contract (:func:`contract_violation`):

* exit code 0 or 2 (argparse errors, InputError and the other user errors give 2);
* exit 2 prints exactly one ``error:`` line and no traceback;
* the case finishes within the timeout;
* a run directory written with exit 0 holds no NaN/inf weights.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

#: Address-space limit of a case (bytes). torch alone maps ~3.2 GB of virtual memory.
CASE_ADDRESS_SPACE = 8 * 2**30
#: Seconds a case may run (tiny inputs: real work takes well under a few seconds).
CASE_TIMEOUT_S = 40.0


@dataclass
class CaseResult:
    argv: list[str]
    code: int | None  # None: killed after the timeout
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.code is None


def _child(argv: list[str], out_path: str, err_path: str, env: dict[str, str]) -> None:
    """Body of the forked child: never returns (os._exit)."""
    code = 1
    try:
        resource.setrlimit(resource.RLIMIT_AS, (CASE_ADDRESS_SPACE, CASE_ADDRESS_SPACE))
        os.environ.update(env)
        out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        from fcnkit.cli import main

        code = int(main(argv))  # main returns; a SystemExit escaping it breaks the contract
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _limit_address_space() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (CASE_ADDRESS_SPACE, CASE_ADDRESS_SPACE))


def run_case_fresh(argv: list[str], *, timeout: float = CASE_TIMEOUT_S,
                   env: dict[str, str] | None = None) -> CaseResult:
    """Run ``python -m fcnkit ARGV`` in a fresh interpreter with the contract's limits.

    For commands that run torch: a forked child of a process whose OpenMP thread pool is
    already running (this pytest process trained the fixture's model) can deadlock in its
    first parallel region, which would be the harness's hang, not fcnkit's.
    """
    import subprocess

    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "fcnkit", *map(str, argv)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            preexec_fn=_limit_address_space, start_new_session=True)
    code: int | None
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and its DataLoader / synth workers
        out, err = proc.communicate()
        code = None
    return CaseResult([str(a) for a in argv], code, out, err, time.monotonic() - start)


def run_case(argv: list[str], *, timeout: float = CASE_TIMEOUT_S, cwd: Path | None = None,
             env: dict[str, str] | None = None) -> CaseResult:
    """Run ``fcnkit ARGV`` in a forked child with the contract's limits (see module doc)."""
    import fcnkit.cli  # noqa: F401  (imported once in the parent, inherited by the child)

    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            if cwd is not None:
                os.chdir(cwd)
            os.setpgid(0, 0)
            _child([str(a) for a in argv], out_path, err_path, dict(env or {}))
        code: int | None = None
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - start > timeout:
                # the child and anything it started (DataLoader / synth workers)
                for target in (-pid, pid):
                    try:
                        os.kill(target, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                os.waitpid(pid, 0)
                break
            time.sleep(0.02)
        seconds = time.monotonic() - start
        out = Path(out_path).read_text(errors="replace") if os.path.exists(out_path) else ""
        err = Path(err_path).read_text(errors="replace") if os.path.exists(err_path) else ""
    return CaseResult([str(a) for a in argv], code, out, err, seconds)


def nan_weights_in(directory: Path) -> list[str]:
    """Checkpoints under ``directory`` whose model weights hold NaN or inf."""
    import torch

    bad = []
    for path in sorted(Path(directory).rglob("*.pt")):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - not ours to judge here
            continue
        weights = state.get("model_state", state) if isinstance(state, dict) else {}
        if any(torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
               for v in weights.values()):
            bad.append(str(path))
    return bad


def contract_violation(result: CaseResult, run_dirs: list[Path] = ()) -> str | None:
    """Why ``result`` breaks the CLI contract, or None when it keeps it."""
    argv = " ".join(result.argv)
    if result.timed_out:
        return f"timeout after {result.seconds:.0f} s: fcnkit {argv}"
    if "Traceback (most recent call last)" in result.stderr:
        last = result.stderr.strip().splitlines()[-1]
        return f"traceback ({last}): fcnkit {argv}"
    if result.code not in (0, 2):
        tail = result.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        return f"exit {result.code} ({tail[0]}): fcnkit {argv}"
    if result.code == 2:
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        if len(errors) != 1:
            return f"exit 2 with {len(errors)} error lines: fcnkit {argv}"
    if result.code == 0:
        for directory in run_dirs:
            bad = nan_weights_in(directory) if Path(directory).exists() else []
            if bad:
                return f"exit 0 with NaN/inf weights in {bad[0]}: fcnkit {argv}"
    if "--json" in result.argv and result.code == 0 and result.stdout.strip():
        try:
            json.loads(result.stdout, parse_constant=_reject_constant)
        except ValueError as exc:
            return f"--json output is not strict JSON ({exc}): fcnkit {argv}"
    return None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@functools.lru_cache(maxsize=1)
def _parser():
    from fcnkit.cli import build_parser

    return build_parser()


def parser_refuses(argv: list[str]) -> bool:
    """True when ``fcnkit``'s argument parser refuses ``argv`` (nothing would run).

    Only parses: no handler is called, so no work starts whatever ``argv`` says.
    """
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            _parser().parse_args([str(a) for a in argv])
        except SystemExit:
            return True
    return False


def in_process_violation(argv: list[str], names: str | tuple[str, ...]) -> str | None:
    """Why ``main(argv)`` in this process breaks the contract of a refused argument.

    The contract: ``main`` returns 2 (raises nothing, SystemExit included), prints one
    ``error:`` line on stderr naming one of ``names`` (the options tried), no traceback, and
    nothing on stdout. Only for an ``argv`` that :func:`parser_refuses` (no work starts).
    """
    from fcnkit.cli import main

    names = (names,) if isinstance(names, str) else tuple(names)
    shown = "fcnkit " + " ".join(map(str, argv))
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    except BaseException as exc:  # noqa: BLE001 - any escape is the violation
        return f"main raised {type(exc).__name__}: {exc}: {shown}"
    out, err = out.getvalue(), err.getvalue()
    lines = err.strip().splitlines()
    if code != 2:
        return f"returned {code!r}, not 2: {shown}"
    if "Traceback (most recent call last)" in err:
        return f"traceback on stderr: {shown}"
    if len(lines) != 1 or "error:" not in lines[0]:
        return f"stderr is not one error line ({err!r}): {shown}"
    if not any(name in lines[0] for name in names):
        return f"the error line names none of {names} ({lines[0]!r}): {shown}"
    if out:
        return f"stdout not empty ({out[:200]!r}): {shown}"
    return None


# ------------------------------------------------------------------ path-collision matrix


def _image(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)


def _dummy_run(run: Path) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    for name in ("last.pt", "best.pt", "metrics.jsonl", "config.json"):
        (run / name).write_bytes(f"{name} of the user's run\n".encode())
    return run


def _predict_into_inputs(root: Path) -> tuple[list[str], list[Path]]:
    images = root / "images"
    _image(images / "a.jpg")
    _image(images / "a.png")  # a.jpg's mask a.png would replace it before it is read
    return (["predict", "--checkpoint", str(_dummy_run(root / "run")), str(images),
             "--out", str(images)], [images / "a.jpg", images / "a.png"])


def _predict_overlay_onto_input(root: Path) -> tuple[list[str], list[Path]]:
    images = root / "images"
    _image(images / "x.jpg")
    _image(images / "x_overlay.jpg")  # x.jpg's overlay has this name
    return (["predict", "--checkpoint", str(_dummy_run(root / "run")), str(images),
             "--out", str(images), "--overlay"], [images / "x.jpg", images / "x_overlay.jpg"])


def _predict_onto_checkpoint(root: Path) -> tuple[list[str], list[Path]]:
    _image(root / "in" / "last.png")
    run = _dummy_run(root / "run")
    (run / "last.png").write_bytes(b"kept")  # not the run's state, but an input by name
    return (["predict", "--checkpoint", str(run / "last.pt"), str(root / "in"), "--out",
             str(root / "in")], [root / "in" / "last.png", run / "last.pt"])


def _export_onto_best(root: Path) -> tuple[list[str], list[Path]]:
    run = _dummy_run(root / "run")
    return (["export", str(run), "--format", "safetensors", "-o", str(run / "best.pt")],
            [run / "best.pt", run / "last.pt"])


def _export_onto_source_hard_link(root: Path) -> tuple[list[str], list[Path]]:
    source = root / "weights.pt"
    source.write_bytes(b"the user's weights\n")
    os.link(source, root / "weights.safetensors")  # the default output name, same inode
    return (["export", str(source), "--format", "safetensors"], [source])


def _report_onto_last(root: Path) -> tuple[list[str], list[Path]]:
    run = _dummy_run(root / "run")
    return (["report", str(run), "-o", str(run / "last.pt")], [run / "last.pt"])


def _report_onto_metrics(root: Path) -> tuple[list[str], list[Path]]:
    run = _dummy_run(root / "run")
    return (["report", str(run), "-o", str(run / "metrics.jsonl")], [run / "metrics.jsonl"])


def _report_onto_config(root: Path) -> tuple[list[str], list[Path]]:
    run = _dummy_run(root / "run")
    return (["report", str(run), "-o", str(run / "config.json")], [run / "config.json"])


def _synth_over_voc(root: Path) -> tuple[list[str], list[Path]]:
    voc = root / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n")
    (voc / "classes.txt").write_text("background\naeroplane\n")
    return (["data", "synth", "--out", str(voc), "--train", "1", "--val", "1", "--size",
             "32,32", "--workers", "0"],
            [voc / "classes.txt", voc / "ImageSets" / "Segmentation" / "train.txt"])


def _reproduce_into_run(root: Path) -> tuple[list[str], list[Path]]:
    run = _dummy_run(root / "run")
    return (["reproduce", "padding", "--out", str(run)], [run / "metrics.jsonl"])


#: name -> builder(root) -> (argv, files that must stay byte-for-byte as they were).
#: Every case must end with exit 2, one error line, and the files untouched.
PATH_COLLISIONS = {
    "predict --out = input directory (a.jpg + a.png)": _predict_into_inputs,
    "predict --overlay onto an input x_overlay.jpg": _predict_overlay_onto_input,
    "predict --out = the directory of a PNG input": _predict_onto_checkpoint,
    "export safetensors -o RUN/best.pt": _export_onto_best,
    "export default output = hard link of the source": _export_onto_source_hard_link,
    "report -o RUN/last.pt": _report_onto_last,
    "report -o RUN/metrics.jsonl": _report_onto_metrics,
    "report -o RUN/config.json": _report_onto_config,
    "data synth --out an existing VOC dataset": _synth_over_voc,
    "reproduce --out a training run": _reproduce_into_run,
}


def snapshot(files: list[Path]) -> dict[Path, tuple[bytes, int]]:
    """The bytes and modification time (ns) of ``files``."""
    return {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}


def collision_violation(result: CaseResult, before: dict[Path, tuple[bytes, int]]
                        ) -> str | None:
    """Why a path-collision case broke its contract (exit 2, one line, files kept), or None."""
    violation = contract_violation(result)
    if violation:
        return violation
    if result.code != 2:
        return f"exit {result.code} (expected 2, refused): fcnkit {' '.join(result.argv)}"
    for file, (data, mtime) in before.items():
        if not file.exists() or file.read_bytes() != data or file.stat().st_mtime_ns != mtime:
            return f"{file} was changed: fcnkit {' '.join(result.argv)}"
    return None
