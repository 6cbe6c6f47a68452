"""Model files someone sent: valid ones load; crafted metadata, foreign or damaged files
are refused with one clear message (issue 15), never answered. No torch needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densestudio.cli import main
from densestudio.runtime.model_file import ModelFileError, check_metadata
from densestudio.runtime.onnx_model import load_onnx

from . import crafted


def test_valid_crafted_model_predicts(tmp_path: Path) -> None:
    model = load_onnx(crafted.write(tmp_path / "ok.onnx", crafted.metadata()))
    assert model.class_names == ["class0", "class1", "class2"] and model.has_ood
    dark, bright = tmp_path / "dark.png", tmp_path / "bright.png"
    Image.new("L", (40, 10), 10).save(dark)  # 4:1: letterboxed, padded with 128
    Image.new("L", (16, 16), 250).save(bright)
    r_dark, r_bright = model.predict([dark, bright])
    assert r_bright.class_name == "class2" and r_bright.unfamiliar  # mean 250/255 > 0.5
    assert r_bright.decision == "UNSURE"
    x = model.preprocess(dark)
    assert x.shape == (1, 16, 16) and x[0, 0, 0] == 128 and x[0, 8, 8] == 10
    assert r_dark.ood_score == pytest.approx(float(x.mean()) / 255, abs=1e-5)
    assert not r_dark.unfamiliar and r_dark.decision is None
    np.testing.assert_allclose(r_dark.probs.sum(), 1.0, atol=1e-5)


CRAFTED = {
    "input size 0": (dict(preprocessing={"width": 0, "height": 0, "mode": "L"}), {},
                     "outside 16-4096"),
    "more outputs than class names": ({}, dict(outputs=5), "5 outputs but 3 class names"),
    "fewer outputs than class names": ({}, dict(outputs=2), "2 outputs but 3 class names"),
    "unknown preprocessing fit": (
        dict(preprocessing={"width": 16, "height": 16, "mode": "L", "fit": "fisheye"}), {},
        "Unknown fit"),
    "unknown mode": (dict(preprocessing={"width": 16, "height": 16, "mode": "CMYK"}), {},
                     "Unknown input mode"),
    "no preprocessing": (dict(preprocessing=None), {}, "preprocessing definition is missing"),
    "preprocessing missing a key": (dict(preprocessing={"width": 16, "mode": "L"}), {},
                                    "malformed preprocessing"),
    "no class names": (dict(class_names=None), {}, "class_names"),
    "duplicate class names": (dict(class_names=["a", "a", "b"]), {}, "distinct"),
    "graph input differs from metadata": ({}, dict(height=32), "takes"),
    "bad operating point": (
        dict(operating_point={"good_class": "nope", "threshold": 0.5}), {}, "operating point"),
    "operating point threshold NaN": (
        dict(operating_point={"good_class": "class0", "threshold": float("nan")}), {},
        "operating point"),
    "ood threshold not a number": (dict(ood={"threshold": "high"}), {}, "not a number"),
    "unknown format": (dict(format="something-else"), {}, "unknown format"),
    "frame checks without ranges": (dict(frame_checks={"version": 1}), {}, "frame checks"),
    "frame check range reversed": (
        dict(frame_checks={"ranges": {"p50": [200, 10]}}), {}, "frame checks"),
    "frame check range not numbers": (
        dict(frame_checks={"ranges": {"std": ["a", "b"]}}), {}, "frame checks"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_metadata_is_refused(tmp_path: Path, case: str) -> None:
    changes, graph, message = CRAFTED[case]
    path = crafted.write(tmp_path / "crafted.onnx", crafted.metadata(**changes), **graph)
    with pytest.raises(ModelFileError, match=message):
        load_onnx(path)


def test_check_metadata_refuses_non_dicts() -> None:
    for meta in (None, [], "text", 3):
        with pytest.raises(ModelFileError, match="not a DenseStudio model file"):
            check_metadata(meta, "m.onnx")


def test_foreign_and_damaged_files(tmp_path: Path) -> None:
    foreign = crafted.write(tmp_path / "foreign.onnx", None)  # valid ONNX, not ours
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 not a model" * 50)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    good = crafted.model_bytes(crafted.metadata())
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelFileError, match="not a DenseStudio one"):
        load_onnx(foreign)
    for path in (garbage, empty, truncated):
        with pytest.raises(ModelFileError, match="not a DenseStudio model file"):
            load_onnx(path)
    with pytest.raises(ModelFileError, match="not found"):
        load_onnx(tmp_path / "missing.onnx")


def test_cli_predict_refuses_with_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    img = tmp_path / "x.png"
    Image.new("L", (16, 16), 3).save(img)
    bad = crafted.write(tmp_path / "bad.onnx", crafted.metadata(), outputs=5)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"junk" * 10)
    for path, message in ((bad, "5 outputs but 3 class names"),
                          (garbage, "not a DenseStudio model file")):
        assert main(["predict", str(path), str(img)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
