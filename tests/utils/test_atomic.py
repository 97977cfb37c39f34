"""The one writer: atomic, never overwriting unasked, failing early and in one line."""

from __future__ import annotations

import os
import stat

import pytest

from unetpp.errors import CheckpointError, DataError
from unetpp.utils.atomic import atomic_write, check_output, write_text


def test_refuses_an_existing_file_unless_asked(tmp_path) -> None:
    path = write_text(tmp_path / "a.csv", "one")
    with pytest.raises(DataError, match=r"a\.csv: file exists; pass --overwrite to replace it"):
        write_text(path, "two")
    assert path.read_text() == "one"
    write_text(path, "two", overwrite=True)
    assert path.read_text() == "two"
    with pytest.raises(CheckpointError, match="file exists"):
        write_text(path, "three", error=CheckpointError)


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    path = write_text(tmp_path / "model.onnx", "old")

    def half_then_crash(tmp) -> None:
        assert tmp.name.endswith(".onnx")  # writers choose the format from the suffix
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(path, half_then_crash, overwrite=True)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_os_errors_while_writing_are_one_line_and_change_nothing(tmp_path) -> None:
    def disk_full(tmp) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(
        DataError, match=r"b\.csv: could not be written \(No space left on device\); nothing was changed"
    ):
        atomic_write(tmp_path / "b.csv", disk_full)
    assert list(tmp_path.iterdir()) == []


def test_files_get_the_umask_permissions_not_private_ones(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "c.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_check_output_fails_before_any_work(tmp_path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match=r"folder: is a folder; give a file name"):
        check_output(tmp_path / "folder")
    assert check_output(tmp_path / "new" / "deeper" / "t.csv") == tmp_path / "new" / "deeper" / "t.csv"
    assert not (tmp_path / "new").exists()  # nothing created by a check: a later failure leaves nothing behind
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(DataError, match=r"locked: cannot write there"):
            check_output(locked / "t.csv")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match=r"file: is a file, not a folder"):
        check_output(blocker / "t.csv")
    with pytest.raises(DataError, match=r"file: is a file, not a folder"):
        check_output(blocker / "deeper" / "t.csv")
