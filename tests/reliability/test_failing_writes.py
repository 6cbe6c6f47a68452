"""A failing write (disk full) while saving a checkpoint or an export keeps the old file."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import NoReturn

import pytest
import torch

from densestudio.core import atomic
from densestudio.ml.runtime import atomic_save


def disk_full(*_args: object, **_kwargs: object) -> NoReturn:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_checkpoint_save_on_full_disk_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = tmp_path / "last.pt"
    atomic_save({"epoch": 3, "w": torch.ones(4)}, ckpt)
    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError):
        atomic_save({"epoch": 4, "w": torch.zeros(4)}, ckpt)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "no temp file left behind"


def test_export_write_on_full_disk_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model.pt"
    # export_model writes (and checks) the file through atomic_write_via
    atomic.atomic_write_via(model, lambda tmp: tmp.write_bytes(b"previous model bytes"))
    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError):
        atomic.atomic_write_via(model, lambda tmp: tmp.write_bytes(b"new model, never done"))
    assert model.read_bytes() == b"previous model bytes"
