from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import NoReturn

import pytest

from densestudio.core import atomic
from densestudio.core.atomic import atomic_output, atomic_write_via


def disk_full(*_args: object, **_kwargs: object) -> NoReturn:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_success_replaces(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with atomic_output(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"], "no temp files left"


def test_disk_full_during_write_keeps_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"previous good file")
    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError) as info:
        with atomic_output(target) as f:
            f.write(b"half of a new fi")
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous good file"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_writer_failure_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"previous")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        disk_full()

    with pytest.raises(OSError):
        atomic_write_via(target, write)
    assert target.read_bytes() == b"previous"
    assert len(os.listdir(tmp_path)) == 1
    atomic_write_via(target, lambda tmp: tmp.write_bytes(b"complete"))
    assert target.read_bytes() == b"complete"


def test_permissions_are_those_of_a_plain_write(tmp_path: Path) -> None:
    """Not the temporary file's 0600: an exported model or CSV must stay readable to others
    as any file the user writes; a replaced file keeps its own mode."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    with atomic_output(tmp_path / "new.bin") as f:
        f.write(b"x")
    assert (tmp_path / "new.bin").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    kept = tmp_path / "kept.bin"
    kept.write_bytes(b"old")
    kept.chmod(0o640)
    atomic_write_via(kept, lambda p: p.write_bytes(b"new"))
    assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_bytes() == b"new"
