"""Model, checkpoint and weights files from strangers cannot run code; broken ones fail clearly.

Each crafted file carries a pickle whose unpickling would create a marker file (a stand-in
for any command). Loading must fail with a clear DenseStudio error and the marker must not
exist afterwards.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from densestudio.core.errors import DenseStudioError
from densestudio.ml.export import load_exported
from densestudio.ml.train import load_checkpoint
from densestudio.ml.zoo import load_state_dict_file


class Payload:
    """Unpickling this calls pathlib.Path.touch(marker): code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[Path], None], tuple[Path]]:
        return (Path.touch, (self.marker,))


def malicious_torch_file(path: Path, marker: Path) -> Path:
    """A real torch.save archive whose pickle runs code (as a plain torch.load would)."""
    torch.save({"format": "densestudio-checkpoint-v1", "model": Payload(marker)}, path)
    return path


def malicious_plain_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"state_dict": Payload(marker)}))
    return path


def malicious_torchscript_zip(path: Path, marker: Path) -> Path:
    """A TorchScript-looking zip whose data.pkl holds the payload."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model/data.pkl", pickle.dumps(Payload(marker)))
        zf.writestr("model/version", "3\n")
        zf.writestr("model/extra/densestudio.json", '{"format": "densestudio-model-v1"}')
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


def test_plain_torch_load_would_run_the_payload(tmp_path: Path, marker: Path) -> None:
    """Sanity check of the test itself: the payload is real."""
    path = malicious_torch_file(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("make", [malicious_torch_file, malicious_plain_pickle])
def test_checkpoint_refused(
    tmp_path: Path, marker: Path, make: Callable[[Path, Path], Path]
) -> None:
    path = make(tmp_path / "evil.ckpt", marker)
    with pytest.raises(DenseStudioError) as info:
        load_checkpoint(path)
    assert "Cannot read checkpoint" in str(info.value) or "not a DenseStudio" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("make", [malicious_torch_file, malicious_plain_pickle])
def test_weights_file_refused(
    tmp_path: Path, marker: Path, make: Callable[[Path, Path], Path]
) -> None:
    path = make(tmp_path / "evil.pth", marker)
    with pytest.raises(DenseStudioError, match="is not a PyTorch weights file"):
        load_state_dict_file(path)
    assert not marker.exists()


@pytest.mark.parametrize("make", [malicious_torch_file, malicious_plain_pickle,
                                  malicious_torchscript_zip])
def test_model_file_refused(
    tmp_path: Path, marker: Path, make: Callable[[Path, Path], Path]
) -> None:
    path = make(tmp_path / "evil.dsmodel", marker)
    with pytest.raises(DenseStudioError, match="not a DenseStudio model file"):
        load_exported(path)
    assert not marker.exists()


def test_truncated_and_garbage_files_give_clear_errors(tmp_path: Path) -> None:
    good = io.BytesIO()
    torch.save({"format": "x", "w": torch.zeros(3)}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    garbage = tmp_path / "garbage.dsmodel"
    garbage.write_bytes(b"\x00\x01 not a model" * 50)
    empty = tmp_path / "empty.dsmodel"
    empty.write_bytes(b"")
    with pytest.raises(DenseStudioError, match="Cannot read checkpoint"):
        load_checkpoint(truncated)
    for path in (garbage, empty, truncated):
        with pytest.raises(DenseStudioError, match="not a DenseStudio model file"):
            load_exported(path)
    with pytest.raises(DenseStudioError, match="not found"):
        load_exported(tmp_path / "missing.dsmodel")
