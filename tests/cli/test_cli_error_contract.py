"""The error contract of ``fcnkit.cli.main(argv)``: it returns an int and never raises
``SystemExit``; user errors (argparse's, InputError, a missing path the user named) are one
stderr line and 2; every other exception is a bug and propagates with its traceback. The web
server sorts exceptions with the same :func:`fcnkit.errors.exit_code_for`."""

from __future__ import annotations

import argparse
import errno

import pytest

import fcnkit
from fcnkit.cli import build_parser, main
from fcnkit.errors import InputError, exit_code_for


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every (sub)command path of the parser, read from the parser itself: ("data", "synth")..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))
            return
    yield prefix


COMMANDS = list(_commands(build_parser()))


def test_every_module_is_reached():
    from fcnkit.cli import COMMAND_MODULES

    assert {c[0] for c in COMMANDS} == set(COMMAND_MODULES)
    assert ("data", "synth") in COMMANDS


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "error:" in lines[0]
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unknown_option_returns_2_with_one_line(command, capsys):
    assert main([*command, "--no-such-option=1"]) == 2  # returned: no SystemExit
    line = _one_error_line(capsys.readouterr().err)
    # argparse names the first problem: the unknown option, or a required one missing
    assert "--no-such-option" in line or "arguments are required" in line


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_returns_0(command, capsys):
    assert main([*command, "--help"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: fcnkit") and err == ""


def test_version_and_no_command(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fcnkit {fcnkit.__version__}"
    assert main([]) == 2  # no command: the usage, and the exit code of a user error
    assert "usage: fcnkit" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2
    assert "no-such-command" in _one_error_line(capsys.readouterr().err)


def test_a_bad_value_names_the_argument(capsys):
    assert main(["conv", "--size", "abc", "--kernel", "3"]) == 2
    assert "--size" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(("exc", "code"), [
    (InputError("--crop must be positive"), 2),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/no/such.pt"), 2),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x.png"), 2),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp"), 2),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/etc/passwd/x"), 2),
    (FileExistsError(errno.EEXIST, "File exists", "/etc/passwd"), 2),  # mkdir on a file
    # Not the user's: a path-less OSError, a full disk, arithmetic, any other bug.
    (FileNotFoundError("no filename attached"), None),
    (OSError(errno.ENOSPC, "No space left on device", "/tmp/out"), None),
    (OSError(errno.EIO, "Input/output error"), None),
    (ZeroDivisionError("division by zero"), None),
    (OverflowError("int too large"), None),
    (ValueError("bad"), None),
    (KeyError("x"), None),
])
def test_exit_code_for(exc, code):
    assert exit_code_for(exc) == code


def _handler_raising(monkeypatch, exc):
    """``fcnkit conv`` whose run() raises ``exc`` after the arguments parsed."""
    import fcnkit.cli.conv as conv

    def run(args):
        raise exc

    monkeypatch.setattr(conv, "run", run)
    monkeypatch.delenv("FCNKIT_DEBUG", raising=False)
    return ["conv", "--size", "5", "--kernel", "3"]


@pytest.mark.parametrize("exc", [
    InputError("--thing: expected a widget\nsecond line"),
    FileNotFoundError(errno.ENOENT, "No such file or directory", "/no/such.pt"),
])
def test_user_errors_from_a_command_return_2(exc, monkeypatch, capsys):
    assert main(_handler_raising(monkeypatch, exc)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("fcnkit conv: error: ")
    assert "expected a widget" in line or "/no/such.pt" in line


@pytest.mark.parametrize("exc", [
    ZeroDivisionError("division by zero"),
    OSError(errno.ENOSPC, "No space left on device", "/tmp/out"),
    RuntimeError("a bug"),
])
def test_bugs_keep_their_exception(exc, monkeypatch, capsys):
    with pytest.raises(type(exc)):
        main(_handler_raising(monkeypatch, exc))


def test_debug_shows_the_traceback_of_a_user_error(monkeypatch):
    argv = _handler_raising(monkeypatch, InputError("x"))
    monkeypatch.setenv("FCNKIT_DEBUG", "1")
    with pytest.raises(InputError):
        main(argv)


def test_out_of_memory_is_one_line(monkeypatch, capsys):
    argv = _handler_raising(monkeypatch, MemoryError())
    assert main(argv) == 2
    assert "out of memory" in _one_error_line(capsys.readouterr().err)


def test_the_web_server_answers_400_for_the_same_user_errors(monkeypatch):
    """The explorer classifies with exit_code_for: 400 for a user error, 500 for a bug."""
    import threading
    import urllib.error
    import urllib.request

    import fcnkit.web.server as server_mod

    raised = {"exc": None}

    def view(name, params):
        raise raised["exc"]

    monkeypatch.setattr(server_mod, "view", view)
    server = server_mod.make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    name = next(iter(server_mod.VIEWS))
    try:
        for exc, status in [(InputError("bad k"), 400),
                            (FileNotFoundError(errno.ENOENT, "missing", "/x"), 400),
                            (ZeroDivisionError("bug"), 500)]:
            raised["exc"] = exc
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(f"{server.url.rstrip('/')}/api/{name}", timeout=30)
            assert info.value.code == status, exc
    finally:
        server.shutdown()
        server.server_close()


def test_a_reader_that_leaves_early_ends_the_command_quietly():  # a fresh interpreter: 0.5 s
    # `fcnkit gridding ... --json | head -2`: before, a BrokenPipeError traceback and exit 1.
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("fcnkit")
    rates = ",".join(["1"] * 31)  # a JSON answer far larger than a pipe's buffer
    proc = subprocess.Popen([str(exe), "gridding", rates, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.read(16).startswith(b"{")
    proc.stdout.close()  # the reader leaves
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err  # 128 + SIGPIPE, as a shell reports `yes | head`
    assert err == ""


def test_a_broken_pipe_in_process_is_the_pipe_exit_code(monkeypatch, capsys):
    from fcnkit.cli import BROKEN_PIPE_EXIT_CODE, gridding

    def closed_pipe(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(gridding, "run", closed_pipe)
    assert main(["gridding", "1,2"]) == BROKEN_PIPE_EXIT_CODE == 141
    assert capsys.readouterr().err == ""
