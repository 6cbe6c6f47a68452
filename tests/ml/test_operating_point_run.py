"""The OK/NG operating point stored with a run: save/load round trip, validation, export
metadata, ``ExportedModel.predict(...).decision`` and the CLI's ``predict`` output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from densestudio.cli import main
from densestudio.core import runs
from densestudio.core.store import Project
from densestudio.ml import operating_point as op
from densestudio.ml.operating_point import OperatingPoint
from tests.ml.conftest import add_images, copy_project, tiny_config, write_images

Trained = tuple[Path, int, Path]  # project file, run, image folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from densestudio.ml.threads import limited_threads
    from densestudio.ml.train import fit

    root = tmp_path_factory.mktemp("oppoint")
    path = root / "p.dsproj"
    with Project.create(path) as project:
        add_images(project, write_images(root / "imgs", n_per_class=12))
        with limited_threads():
            run_id = fit(project, tiny_config(epochs=2))
    return path, run_id, root / "imgs"


def test_save_load_round_trip_and_validation(trained: Trained, tmp_path: Path) -> None:
    src, run_id, _ = trained
    path = tmp_path / src.name
    copy_project(src, path)
    with Project.open(path) as project:
        assert op.load_operating_point(project, run_id) is None
        before = runs.get_run(project, run_id).extra
        point = OperatingPoint("bright", 0.62, 0.4, 0.8, cost_miss=10.0, cost_false_reject=1.0)
        op.save_operating_point(project, run_id, point)
        assert op.load_operating_point(project, run_id) == point
        extra = runs.get_run(project, run_id).extra
        assert extra["operating_point"]["threshold"] == 0.62
        assert {k: v for k, v in extra.items() if k != "operating_point"} == before  # kept
        # Overwrite, then remove.
        op.save_operating_point(project, run_id, OperatingPoint("bright", 0.5))
        assert op.load_operating_point(project, run_id) == OperatingPoint("bright", 0.5)
        for bad, match in (
            (OperatingPoint("metal", 0.5), "not a class"),
            (OperatingPoint("bright", 1.5), "between 0 and 1"),
            (OperatingPoint("bright", 0.5, 0.7, 0.3), "low < high"),
            (OperatingPoint("bright", 0.5, 0.3, None), "both"),
        ):
            with pytest.raises(op.OperatingPointError, match=match):
                op.save_operating_point(project, run_id, bad)
        assert op.load_operating_point(project, run_id) == OperatingPoint("bright", 0.5)
        op.save_operating_point(project, run_id, None)
        assert op.load_operating_point(project, run_id) is None
        assert "operating_point" not in runs.get_run(project, run_id).extra


def test_helpers() -> None:
    assert op.suggest_good_class(["scratch", "OK", "spot"]) == "OK"  # older name
    assert op.suggest_good_class(["a", "b"]) is None
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    p_good, is_good = op.good_scores(probs, np.array([0, 1, 1]), good_index=0)
    assert np.allclose(p_good, [0.9, 0.2, 0.6]) and is_good.tolist() == [True, False, False]
    assert op.from_dict(None) is None
    assert op.from_dict({"good_class": "ok", "threshold": 0.3, "good_index": 0}) == (
        OperatingPoint("ok", 0.3))


def test_export_carries_the_point_and_predicts(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from densestudio.ml.export import export_model, load_exported

    src, run_id, imgs = trained
    path = tmp_path / src.name
    copy_project(src, path)
    with Project.open(path) as project:
        plain = load_exported(export_model(project, run_id, tmp_path / "plain.pt"))
        assert plain.metadata["operating_point"] is None and plain.operating_point is None
        point = OperatingPoint("bright", 0.5, 0.3, 0.7)
        op.save_operating_point(project, run_id, point)
        out = export_model(project, run_id, tmp_path / "model.pt")
        names = runs.run_class_names(project, run_id)
    model = load_exported(out)
    meta = model.metadata["operating_point"]
    assert meta["good_class"] == "bright" and meta["good_index"] == names.index("bright")
    assert (meta["threshold"], meta["unsure_low"], meta["unsure_high"]) == (0.5, 0.3, 0.7)
    assert model.operating_point == point

    files = sorted((imgs / "bright").iterdir())[:3] + sorted((imgs / "dark").iterdir())[:3]
    results = model.predict(files)
    k = names.index("bright")
    for r in results:
        assert r.decision == point.decide(float(r.probs[k]))
        assert r.decision in ("OK", "NG", "UNSURE")
    assert [r.decision for r in plain.predict(files[:1])] == [None]

    # Still plain torch + JSON: the metadata parses without DenseStudio.
    import warnings

    import torch

    extra = {"densestudio.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(out), map_location="cpu", _extra_files=extra)
    assert json.loads(extra["densestudio.json"])["operating_point"]["good_class"] == "bright"

    # CLI: a decision column, and the rule on stderr.
    capsys.readouterr()
    assert main(["predict", str(out), *map(str, files)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 6
    for line, r in zip(lines, results, strict=False):
        assert line.split("\t")[-1] == r.decision
    assert "OK if P(bright) >= 0.500" in captured.err and "UNSURE" in captured.err
    csv_path = tmp_path / "preds.csv"
    assert main(["predict", str(out), *map(str, files), "--csv", str(csv_path)]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert [row["decision"] for row in rows] == [r.decision for r in results]
    # Without a point the file still decides UNSURE on a frame that fails its frame checks, so
    # the decision column is there: "-" for an ordinary frame (no OK/NG without a point).
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "plain.pt"), str(files[0])]) == 0
    path, name, confidence, decision = capsys.readouterr().out.strip().split("\t")
    assert name in names and 0 <= float(confidence) <= 1 and decision == "-"
