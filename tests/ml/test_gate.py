"""The release gate on a crafted pair of runs (stored predictions, no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from densestudio.core import runs, signoff
from densestudio.core.models import Image
from densestudio.core.store import Project, bulk_insert_images, lock_test_split
from densestudio.ml.gate import GateError, compare_runs_for_gate

NAMES = ["ok", "scratch"]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project.create(tmp_path / "gate.dsproj")
    yield p
    p.close()


def make_project(project: Project, n: int = 30) -> tuple[list[int], dict[str, int]]:
    rows = [dict(path=f"/line/p{i:02d}.png", filename=f"p{i:02d}.png", folder="/line",
                 content_hash=f"{i:064x}", byte_size=10, width=8, height=8, mode="L")
            for i in range(n)]
    with project.transaction() as s:
        bulk_insert_images(s, rows)
    ids = project.image_ids()
    classes = project.ensure_classes(NAMES)
    project.set_labels(ids[: n // 2], classes["ok"])
    project.set_labels(ids[n // 2 :], classes["scratch"])
    with project.transaction() as s:  # the last 20 images are the test split
        s.execute(update(Image).values(split="train"))
        s.execute(update(Image).where(Image.id.in_(ids[n - 20 :])).values(split="test"))
    return ids, classes


def truth(ids: list[int], n: int = 30) -> dict[int, int]:
    return {i: 0 if k < n // 2 else 1 for k, i in enumerate(ids)}


def crafted_run(project: Project, ids: list[int], wrong: set[int], p_right: float = 0.9,
                subset: str = "test", name: str = "") -> int:
    """A finished run that predicts ``ids`` (stored as ``subset``), wrong on ``wrong``."""
    t = truth(project.image_ids())
    snapshot = [(i, t[i], "train" if subset != "test" else "test") for i in ids]
    run_id = runs.create_run(project, name=name, config_json="{}", class_names=NAMES,
                             snapshot=snapshot)
    preds = []
    for i in ids:
        true = t[i]
        pred = 1 - true if i in wrong else true
        probs = np.full(2, 1 - p_right, np.float32)
        probs[pred] = p_right
        preds.append(runs.PredictionInfo(i, subset, true, pred, p_right, 0.1, probs))
    runs.save_predictions(project, run_id, subset, preds)
    runs.update_run(project, run_id, status="finished", metrics={"data_fingerprint": "f"})
    return run_id


def test_gate_image_by_image_with_intervals(project: Project) -> None:
    ids, _ = make_project(project)
    test = ids[10:]
    old = crafted_run(project, test, wrong={test[0], test[1]}, p_right=0.95)
    signoff.approve_run(project, old, "baseline")
    new = crafted_run(project, test, wrong={test[1], test[2], test[3]}, p_right=0.8)
    lock_test_split(project, True)
    g = compare_runs_for_gate(project, new)
    assert g.against == old and g.against_approved and g.n_test == 20 and g.n_golden == 0
    assert [i.image_id for i in g.newly_wrong] == [test[2], test[3]]
    assert [i.image_id for i in g.newly_right] == [test[0]]
    assert g.passed and g.mcnemar_p == pytest.approx(0.5)  # 2 vs 1: noise
    acc = next(m for m in g.metrics if m.name == "accuracy")
    assert (acc.candidate.k, acc.candidate.n, acc.against.k) == (17, 20, 18)
    assert acc.delta == pytest.approx(-0.05)
    assert acc.candidate.low < 0.85 < acc.candidate.high
    assert {m.name for m in g.metrics} >= {"balanced accuracy", "recall ok", "recall scratch"}
    # every image right in both lost confidence (0.95 -> 0.8): the largest drops are listed
    assert len(g.confidence_drops) == 10
    assert all(i.candidate_right and i.against_right for i in g.confidence_drops)
    assert g.confidence_drops[0].shift == pytest.approx(0.8 - 0.95, abs=1e-6)
    assert g.warnings == ()
    assert g.verdict.startswith(f"PASS: run {new} vs approved run {old}: 2 newly wrong")
    text = g.format()
    assert "newly wrong: 2" in text and "p12.png" in text and "95 % CI" in text


def test_gate_fails_on_a_significant_drop_and_on_must_pass_images(project: Project) -> None:
    ids, _ = make_project(project)
    test = ids[10:]
    old = crafted_run(project, test, wrong=set())
    signoff.approve_run(project, old, "baseline")
    worse = crafted_run(project, test, wrong=set(test[:6]))
    g = compare_runs_for_gate(project, worse)
    assert not g.passed and len(g.newly_wrong) == 6 and g.mcnemar_p == pytest.approx(1 / 64)
    assert "significantly worse" in g.verdict and g.verdict.startswith("FAIL")
    assert any("not locked" in w for w in g.warnings)

    # must-pass images from the training split: the gate uses their stored predictions
    golden = ids[:2]
    signoff.add_golden(project, [*golden, test[10]])
    for run_id, wrong in ((old, set()), (worse, {golden[0]})):
        t = truth(project.image_ids())
        runs.save_predictions(project, run_id, "unlabeled", [
            runs.PredictionInfo(i, "unlabeled", None, 1 - t[i] if i in wrong else t[i], 0.9,
                                None, np.eye(2, dtype=np.float32)[
                                    1 - t[i] if i in wrong else t[i]]) for i in golden])
    one_off = crafted_run(project, test, wrong={test[0]})  # not significant on its own
    runs.save_predictions(project, one_off, "unlabeled", [
        runs.PredictionInfo(golden[0], "unlabeled", None, 1, 0.9, None,
                            np.array([0.1, 0.9], np.float32)),
        runs.PredictionInfo(golden[1], "unlabeled", None, 0, 0.9, None,
                            np.array([0.9, 0.1], np.float32))])
    g = compare_runs_for_gate(project, one_off, against=old)
    assert g.n_golden == 3 and len(g.images) == 22
    assert [i.image_id for i in g.golden_failures] == [golden[0]]
    assert not g.passed and g.reasons == ("1 must-pass image(s) wrong",)
    assert "must-pass images wrong (1)" in g.format()
    strict = compare_runs_for_gate(project, one_off, against=old, max_newly_wrong=0)
    assert any("newly wrong images (at most 0 allowed)" in r for r in strict.reasons)


def test_gate_without_an_approved_run_and_errors(project: Project) -> None:
    ids, _ = make_project(project)
    test = ids[10:]
    only = crafted_run(project, test, wrong={test[0]})
    g = compare_runs_for_gate(project, only)
    assert g.against is None and g.passed and not g.newly_wrong
    assert "no approved run" in g.verdict
    assert g.verdict.startswith("NOTHING TO COMPARE AGAINST") and "PASS" not in g.verdict
    with pytest.raises(GateError, match="same run"):
        compare_runs_for_gate(project, only, only)
    signoff.add_golden(project, [ids[0]])  # a must-pass image no run has predicted
    with pytest.raises(GateError, match="cannot predict them"):
        compare_runs_for_gate(project, only)
