"""The unknown-input flag: a class held out of training, a blank and a saturated frame are
UNSURE; most images of the known classes are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from densestudio.runtime.onnx_model import load_onnx

from .conftest import StripRun, write_strips


def test_ood_flag_fires_on_a_held_out_class(strip_run: StripRun, tmp_path: Path) -> None:
    model = load_onnx(strip_run.model_path)
    ood = model.metadata["ood"]
    assert ood["method"] == "knn-cosine" and model.spec.ood_threshold == ood["threshold"]
    held_out = write_strips(tmp_path / "new", ("stripes",), 10, seed=9)  # never trained on
    known = write_strips(tmp_path / "known", ("dark", "bright"), 5, seed=9)
    flat = []
    for value in (0, 255):  # lens cap, saturated frame
        flat.append(tmp_path / f"flat{value}.png")
        Image.new("L", (96, 24), value).save(flat[-1])
    new = model.predict([p for p, _ in held_out])
    assert np.mean([r.unfamiliar for r in new]) >= 0.9
    assert all(r.decision == "UNSURE" for r in new if r.unfamiliar)
    assert all(r.unfamiliar for r in model.predict(flat))
    familiar = model.predict([p for p, _ in known])
    # 4-6 validation images set the threshold here; the share on real data is measured in
    # tests/benchmarks/bench_ood.py
    assert np.mean([r.unfamiliar for r in familiar]) <= 0.5
    assert min(r.ood_score for r in new) > max(r.ood_score for r in familiar)
