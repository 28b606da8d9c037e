"""The run-directory lock: a second writer is refused with one line, a dead holder's lock
is taken over, temporaries of a killed writer are removed."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fcnkit.atomic import TEMP_PREFIX, atomic_path, is_temp_file, remove_stale_temp_files
from fcnkit.errors import InputError
from fcnkit.training.rundir import LOCK_NAME, RunLock, read_lock_owner

HOLDER = textwrap.dedent("""
    import sys, time
    from fcnkit.training.rundir import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def holder(tmp_path):
    """A second process holding the lock on tmp_path/run (killed at teardown)."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    assert proc.stdout.readline().strip() == "locked"
    yield run, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


@pytest.mark.slow  # a holder process: seconds
def test_second_process_is_refused_naming_the_holder(holder):
    run, proc = holder
    with pytest.raises(InputError) as info:
        RunLock(run).acquire()
    message = str(info.value)
    assert "\n" not in message
    assert f"pid {proc.pid}" in message and "another run directory" in message
    assert read_lock_owner(run)["pid"] == proc.pid


@pytest.mark.slow  # a holder process: seconds
def test_lock_of_a_killed_process_is_stale_and_taken_over(holder):
    run, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (run / LOCK_NAME).exists()  # the dead holder could not remove its file
    with RunLock(run) as lock:
        assert lock.held
        assert read_lock_owner(run)["pid"] == os.getpid()
    assert not (run / LOCK_NAME).exists()


def test_lock_is_exclusive_within_one_process_and_released(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(InputError, match="in use"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released: can be taken again
        owner = json.loads((tmp_path / LOCK_NAME).read_text())
        assert owner["pid"] == os.getpid()


@pytest.mark.slow  # a holder process: seconds
def test_cli_train_into_locked_run_directory_is_one_line(holder, capsys):
    from fcnkit.cli import main

    run, _ = holder
    code = main(["train", "--data", "synth:/nonexistent", "--out", str(run), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "in use" in err  # refused before the (missing) data is even opened


def test_atomic_temporaries_are_recognised_and_removed(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "last.pt") as tmp:
        assert is_temp_file(tmp) and tmp.name.startswith(TEMP_PREFIX) and tmp.suffix == ".pt"
        tmp.write_bytes(b"half")
        left = tmp
        raise RuntimeError("crash")
    assert not left.exists()
    # what a kill -9 leaves behind (this and the earlier ".<stem>.<random>.tmp<suffix>" name)
    stale = [tmp_path / f"{TEMP_PREFIX}last.abcd1234.pt", tmp_path / ".best.k3j_9x2a.tmp.pt"]
    keep = [tmp_path / "last.pt", tmp_path / ".hidden", tmp_path / "notes.tmp.txt"]
    for path in stale + keep:
        path.write_bytes(b"x")
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
    # a concurrent writer's fresh temporary survives an age threshold
    stale[0].write_bytes(b"x")
    assert remove_stale_temp_files(tmp_path, older_than_s=3600) == []
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_a_run_refused_before_writing_leaves_no_directory(tmp_path, capsys):
    from fcnkit.cli import main

    out = tmp_path / "new_run"
    assert main(["train", "--data", f"synth:{tmp_path / 'missing'}", "--out", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()


def test_predict_refuses_an_unwritable_output_directory_before_loading(tmp_path, capsys):
    from fcnkit.atomic import check_writable_directory
    from fcnkit.cli import main

    # /sys refuses new entries even to root (chmod would not stop root).
    unwritable = "/sys/fcnkit_cannot_write_here"
    with pytest.raises(InputError, match="not writable"):
        check_writable_directory(unwritable)
    # the checkpoint does not exist either: the output directory is checked first
    code = main(["predict", "--checkpoint", str(tmp_path / "missing.pt"), str(tmp_path),
                 "--out", unwritable])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not writable" in err[0]
    # a writable, missing directory is probed and not left behind
    check_writable_directory(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    if os.geteuid() != 0:
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match="not writable"):
            check_writable_directory(locked)
