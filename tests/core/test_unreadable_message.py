"""One plain message for an unreadable image: the import report, the viewer and
`densestudio predict` (through the model file's preprocessing) say the same words."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densestudio.core.imaging import DAMAGED, NOT_AN_IMAGE, ImageDecodeError, load_image
from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.preprocess import Preprocessing
from densestudio.core.store import Project


def _files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True)
    garbage = folder / "garbage.png"
    garbage.write_bytes(b"hello, not an image")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        buf, "JPEG")
    cut = folder / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return {NOT_AN_IMAGE: garbage, DAMAGED: cut}


def test_one_plain_message_everywhere(project: Project, tmp_path: Path) -> None:
    files = _files(tmp_path / "in")
    report = run_import(project, [tmp_path / "in"], ImportOptions())
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    for message, path in files.items():
        assert reasons[path.name] == message  # the import report
        with pytest.raises(ImageDecodeError) as viewer:  # the viewer decodes with this
            load_image(path)
        with pytest.raises(ImageDecodeError) as predict:  # a model file's preprocessing
            Preprocessing(32, 32).load(path)
        assert str(viewer.value) == str(predict.value) == message
        assert "Pillow" not in message and "(" not in message
