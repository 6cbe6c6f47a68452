"""history / verify / golden / approve / gate from the command line, and the intervals in
evaluate and operating-point (crafted runs: stored predictions, no training)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from densestudio.cli import main
from densestudio.core import runs, signoff
from densestudio.core.store import Project
from densestudio.ml import operating_point as op
from tests.ml.test_gate import crafted_run, make_project

Crafted = tuple[Path, list[int], int, int]  # project file, image ids, old run, new run


@pytest.fixture
def crafted(tmp_path: Path) -> Crafted:
    path = tmp_path / "p.dsproj"
    with Project.create(path) as project:
        ids, _ = make_project(project)
        test = ids[10:]
        old = crafted_run(project, test, wrong={test[0]})
        new = crafted_run(project, test, wrong=set(test[:7]))
    return path, ids, old, new


def test_evaluate_and_operating_point_show_intervals(
    crafted: Crafted, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ids, old, _new = crafted
    assert main(["evaluate", str(path), "--run", str(old)]) == 0
    out = capsys.readouterr().out.splitlines()
    # the test split holds 5 "ok" and 15 "scratch" images; the run misses one "ok"
    assert out[1].strip().startswith("balanced accuracy 90.0 % (95 % CI")
    assert "worst class ok 80.0 % recall (4 of 5; 95 % CI 28.4-99.5 %)" in out[1]
    assert out[2].strip().startswith("accuracy 95.0 % (95 % CI 75.1-99.9 %)")
    assert any("precision" in line and "95 % CI" in line for line in out)

    assert main(["operating-point", str(path), "--run", str(old), "--subset", "test",
                 "--good", "ok"]) == 0
    out = capsys.readouterr().out
    assert "miss rate (95 % CI)" in out and "false-reject rate (95 % CI)" in out
    assert "so the true miss rate is at most" in out
    assert "to show <= 1 % with 95 % confidence you need >= 299 defect images" in out

    assert main(["operating-point", str(path), "--run", str(old), "--subset", "test",
                 "--good", "ok", "--max-miss-rate", "0.01"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No threshold can show a miss rate <= 1 %" in err
    assert "15 defect images" in err and "284 more" in err

    assert main(["operating-point", str(path), "--run", str(old), "--subset", "test",
                 "--good", "ok", "--max-miss-rate", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "<- miss rate <= 30 % (upper bound)" in out and "Saved for run" in out
    with Project.open(path) as project:
        point = op.load_operating_point(project, old)
        probs, true = op.stored_predictions(project, old, "test")
        p_good, is_good = op.good_scores(probs, true, 0)
        assert point.threshold == op.threshold_for_max_miss(p_good, is_good, 0.3).threshold
        assert op.rates_with_intervals(p_good, is_good, point).miss_upper <= 0.3


def test_approve_gate_and_golden(crafted: Crafted, capsys: pytest.CaptureFixture[str]) -> None:
    path, ids, old, new = crafted
    assert main(["approve", str(path), "--run", str(old)]) == 2
    assert "why" in capsys.readouterr().err
    assert main(["--user", "Ana (QA)", "approve", str(path), "--run", str(old), "--why",
                 "line trial passed"]) == 0
    assert f"Approved run {old} by Ana (QA)" in capsys.readouterr().out
    assert main(["approve", str(path), "--list"]) == 0
    assert "line trial passed" in capsys.readouterr().out

    assert main(["gate", str(path), "--candidate", str(new)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith(f"FAIL: run {new} vs approved run {old}: significantly worse")
    assert main(["gate", str(path), "--candidate", str(old), "--against", str(new)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("PASS")

    assert main(["golden", str(path), "add", "p25.png", str(ids[26]), "--note", "17"]) == 0
    assert "Marked 2 image(s)" in capsys.readouterr().out
    assert main(["golden", str(path), "list"]) == 0
    assert "/line/p25.png" in capsys.readouterr().out
    assert main(["golden", str(path), "remove", "/line/p25.png"]) == 0
    with Project.open(path) as project:
        assert signoff.golden_ids(project) == {ids[26]}
    assert main(["golden", str(path), "add", "nope.png"]) == 2


def test_history_and_verify(crafted: Crafted, capsys: pytest.CaptureFixture[str]) -> None:
    path, ids, _old, _new = crafted
    assert main(["history", str(path), "p03.png"]) == 0
    out = capsys.readouterr().out
    assert f"Image {ids[3]}: /line/p03.png" in out and "(unlabeled) -> ok" in out
    assert main(["history", str(path), "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "Label history: 30 change(s), the last 5 shown" in out
    assert main(["verify", str(path)]) == 0
    assert "OK: nothing was changed" in capsys.readouterr().out
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE label_event SET new_class = 'scratch' WHERE id = 4")
    con.close()
    assert main(["history", str(path), "--verify", "--limit", "1"]) == 1
    out = capsys.readouterr().out
    assert "label history row 4: content was changed" in out and "TAMPERED" in out
    with Project.open(path) as project:
        assert runs.get_run(project, 1).status == "finished"  # nothing else touched
