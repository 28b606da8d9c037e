"""fcnkit.outputs: outputs resolved against inputs, each other and a run's state; atomic
writes and run files never go through a symbolic link."""

from __future__ import annotations

import os

import pytest

from fcnkit.atomic import TEMP_PREFIX, atomic_path, open_no_follow, write_text_atomic
from fcnkit.errors import InputError
from fcnkit.outputs import check_fresh_directory, check_outputs, is_run_state


def _run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("metrics.jsonl", "config.json", "last.pt", "best.pt"):
        (run / name).write_bytes(name.encode())
    return run


def test_an_output_that_is_an_input_is_refused(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"png")
    with pytest.raises(InputError, match="is the input"):
        check_outputs([tmp_path / "a.png"], [image])
    # the same file under another spelling, a symlink and a hard link
    for other in (tmp_path / "sub" / ".." / "a.png", tmp_path / "link.png",
                  tmp_path / "hard.png"):
        if other.name == "link.png":
            other.symlink_to(image)
        elif other.name == "hard.png":
            os.link(image, other)
        else:
            (tmp_path / "sub").mkdir()
        with pytest.raises(InputError, match="is the input"):
            check_outputs([other], [image])
    assert image.read_bytes() == b"png"


def test_force_accepts_inputs_but_never_two_writes_of_one_file(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"png")
    assert check_outputs([image], [image], force=True) == [image.resolve()]
    with pytest.raises(InputError, match="written twice"):
        check_outputs([tmp_path / "x.png", tmp_path / "." / "x.png"], [], force=True)


def test_a_run_state_is_refused_unless_forced(tmp_path):
    run = _run(tmp_path)
    for name in ("metrics.jsonl", "config.json", "last.pt", "best.pt", "other.pt"):
        assert is_run_state(run / name)
        with pytest.raises(InputError, match="training run's state.*--force"):
            check_outputs([run / name])
        check_outputs([run / name], force=True)
    # outside a run directory only last.pt / best.pt are a run's by name
    assert not is_run_state(tmp_path / "config.json")
    assert not is_run_state(tmp_path / "model.pt")
    assert is_run_state(tmp_path / "best.pt")
    assert not is_run_state(run / "report.html")


def test_messages_are_one_line(tmp_path):
    run = _run(tmp_path)
    with pytest.raises(InputError) as info:
        check_outputs([run / "last.pt"])
    assert "\n" not in str(info.value) and str(run / "last.pt") in str(info.value)


def test_fresh_directory(tmp_path):
    check_fresh_directory(tmp_path / "new", own=("synthetic.json",), what="dataset")
    (tmp_path / "empty").mkdir()
    check_fresh_directory(tmp_path / "empty", own=("synthetic.json",), what="dataset")
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "classes.txt").write_text("background\n")
    with pytest.raises(InputError, match="not empty.*--force"):
        check_fresh_directory(voc, own=("synthetic.json",), what="dataset")
    check_fresh_directory(voc, own=("synthetic.json",), what="dataset", force=True)
    (voc / "synthetic.json").write_text("{}")
    check_fresh_directory(voc, own=("synthetic.json",), what="dataset")


def test_atomic_writes_refuse_a_symlink_destination(tmp_path):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep")
    link = tmp_path / "config.json"
    link.symlink_to(elsewhere)
    with pytest.raises(InputError, match="symbolic link"):
        write_text_atomic(link, "replaced")
    with pytest.raises(InputError, match="symbolic link"), atomic_path(link):
        pass
    assert elsewhere.read_text() == "keep" and link.is_symlink()


def test_open_no_follow(tmp_path):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    with pytest.raises(InputError, match="symbolic link"):
        open_no_follow(link, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    assert elsewhere.read_text() == "keep"
    fd = open_no_follow(tmp_path / "plain", os.O_RDWR | os.O_CREAT)
    os.close(fd)
    assert (tmp_path / "plain").is_file()


def test_an_output_that_cannot_be_created_is_named_not_its_temporary_file(tmp_path, capsys):
    from fcnkit.cli import main

    blocker = tmp_path / "notes.txt"  # a file where the output's directory would go
    blocker.write_text("keep")
    target = blocker / "curves.png"
    with pytest.raises(InputError) as info, atomic_path(target):
        pass
    message = str(info.value)
    assert message.startswith(f"cannot write {target}:") and TEMP_PREFIX not in message
    # The command line says the same in one line, exit code 2 (before: the temporary
    # file's name in an OSError text, with no fix).
    assert main(["gridding", "1,2", "--plot", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(target) in err[0] and TEMP_PREFIX not in err[0]
    assert blocker.read_text() == "keep"

