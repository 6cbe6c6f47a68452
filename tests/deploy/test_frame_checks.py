"""Frame checks (issue 25): a black, blown-out, flat or blurred frame is UNSURE with the
reason, whatever the classifier says; ordinary frames pass; the reason reaches the CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from densestudio.cli import main
from densestudio.runtime import frame_checks as F
from densestudio.runtime.onnx_model import load_onnx

from . import crafted
from .conftest import StripRun, write_strips


def bad_frames(folder: Path, size: tuple[int, int] = (96, 24)) -> dict[str, Path]:
    """A lens cap, a saturated frame, an empty grey belt and an out-of-focus strip."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    w, h = size
    frames = {
        "too dark": np.clip(rng.normal(2, 1.5, (h, w)), 0, 255),
        "overexposed": np.clip(rng.normal(254, 1.5, (h, w)), 0, 255),
        "flat": np.full((h, w), 128.0),
    }
    out = {}
    for reason, arr in frames.items():
        out[reason] = folder / f"{reason.replace(' ', '_')}.png"
        Image.fromarray(arr.astype(np.uint8), "L").save(out[reason])
    (src, _), = write_strips(folder / "src", ("bright",), 1, seed=21)
    out["out of focus"] = folder / "blurred.png"
    Image.open(src).filter(ImageFilter.GaussianBlur(1)).save(out["out of focus"])
    return out


def test_short_training_flags_bad_frames_and_passes_ordinary_ones(
    strip_run: StripRun, tmp_path: Path
) -> None:
    model = load_onnx(strip_run.model_path)
    entry = model.metadata["frame_checks"]
    assert entry["version"] == F.VERSION and set(entry["by_class"]) == {"dark", "bright"}
    assert set(entry["ranges"]) == set(F.STATS) and model.spec.frame_checks is not None
    frames = bad_frames(tmp_path / "bad")
    results = model.predict(list(frames.values()))
    for (reason, path), r in zip(frames.items(), results, strict=True):
        assert r.reason == reason and r.unfamiliar and r.decision == "UNSURE", (path, r)
    known = write_strips(tmp_path / "known", ("dark", "bright"), 10, seed=31)
    ordinary = model.predict([p for p, _ in known])
    assert not any(r.reason in F.PRIORITY[:-1] for r in ordinary)  # no frame check fails
    assert [r.class_name for r in ordinary] == [k for _, k in known]


def test_a_frame_must_fit_one_class_not_each_statistic_somewhere() -> None:
    """A mid-grey calm frame is unlike every class even though its brightness fits one
    class and its contrast another: the ranges are per class."""
    rng = np.random.default_rng(0)

    def frame(mean: float, noise: float) -> F.FrameStats:
        return F.frame_stats(Image.fromarray(
            np.clip(rng.normal(mean, noise, (64, 64)), 0, 255).astype(np.uint8), "L"))

    stats = [frame(200, 30) for _ in range(5)] + [frame(60, 4) for _ in range(5)]
    entry = F.ranges_from(stats, ["bright"] * 5 + ["calm"] * 5)
    one_box = F.FrameChecks.from_meta({"ranges": entry["ranges"]})
    per_class = F.FrameChecks.from_meta(entry)
    assert one_box is not None and per_class is not None
    odd = frame(140, 4)  # mid-grey and calm: like no class
    assert one_box.reason(odd) is None  # every statistic is inside the overall ranges
    assert per_class.reason(odd) in F.PRIORITY
    assert per_class.reason(frame(200, 30)) is None and per_class.reason(frame(60, 4)) is None
    assert F.FrameChecks.from_meta(None) is None  # files made before frame checks


def test_reason_reaches_the_csv_and_old_files_keep_working(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-made file (no torch): with frame checks the CSV says why; without them (older
    files) nothing is flagged by frame checks and the columns stay as they were."""
    rng = np.random.default_rng(1)
    training = [F.frame_stats(Image.fromarray(
        np.clip(rng.normal(100, 20, (16, 16)), 0, 255).astype(np.uint8), "L"))
        for _ in range(8)]
    meta = crafted.metadata(ood=None, frame_checks=F.ranges_from(training, ["class0"] * 8))
    model = crafted.write(tmp_path / "checked.onnx", meta)
    old = crafted.write(tmp_path / "old.onnx", crafted.metadata(ood=None))
    good, black = tmp_path / "good.png", tmp_path / "black.png"
    Image.fromarray(np.clip(rng.normal(100, 20, (16, 16)), 0, 255).astype(np.uint8),
                    "L").save(good)
    Image.new("L", (16, 16), 0).save(black)
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(good), str(black), "--csv", str(out)]) == 0
    assert "1 of 2 frames unfit to judge" in capsys.readouterr().err
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out.open())}
    assert rows["black.png"]["reason"] == "too dark" and rows["black.png"]["unfamiliar"] == "1"
    assert rows["black.png"]["decision"] == "UNSURE"
    assert rows["good.png"]["reason"] == "" and rows["good.png"]["decision"] == ""
    assert main(["predict", str(model), str(black)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("UNSURE\ttoo dark")
    assert main(["predict", str(old), str(good), str(black), "--csv", str(out)]) == 0
    rows_old = list(csv.DictReader(out.open()))
    assert "reason" not in rows_old[0] and "decision" not in rows_old[0]
    r_old = load_onnx(old).predict([black])[0]
    assert r_old.reason is None and not r_old.unfamiliar and r_old.decision is None


def test_16_bit_frames_are_measured_as_the_model_sees_them() -> None:
    """A 12-bit camera frame is windowed (as preprocessing does), not clipped to white."""
    arr = np.random.default_rng(0).normal(3000, 300, (64, 64)).astype(np.uint16)
    stats = F.frame_stats(Image.fromarray(arr))
    assert 100 <= stats.p50 <= 150 and stats.bright < 0.05


def test_a_class_with_few_training_frames_gets_wider_ranges() -> None:
    """One training frame of a class does not make its next frame 'unlike the training
    images': small classes are widened by the spread of all frames."""
    rng = np.random.default_rng(2)

    def frame(mean: float, noise: float) -> F.FrameStats:
        return F.frame_stats(Image.fromarray(
            np.clip(rng.normal(mean, noise, (64, 64)), 0, 255).astype(np.uint8), "L"))

    stats = [frame(rng.uniform(60, 90), rng.uniform(8, 14)) for _ in range(30)]
    entry = F.ranges_from([*stats, frame(180, 20)], ["common"] * 30 + ["rare"])
    checks = F.FrameChecks.from_meta(entry)
    assert checks is not None and set(entry["by_class"]) == {"common", "rare"}
    assert checks.reason(frame(176, 19)) is None  # like the one rare frame, not identical
    assert checks.reason(frame(176, 0.5)) is not None  # but a flat frame is still flagged
