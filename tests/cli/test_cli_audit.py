"""`densestudio audit`: the most suspicious labels from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from densestudio.cli import main
from densestudio.core import runs
from densestudio.core.store import Project
from densestudio.ml.threads import limited_threads
from tests.ml.conftest import CLASS_NAMES, add_images, small_class_audit, write_images


def test_audit_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = write_images(tmp_path / "imgs", 10)
    wrong = files[0][0]  # a dark image labeled "stripes"
    files[0] = (wrong, CLASS_NAMES[2])
    path = tmp_path / "p.dsproj"
    with Project.create(path) as project:
        add_images(project, files)

    assert main(["audit", str(path), "--show"]) == 2  # no audit yet: a clear error
    assert "no label audit yet" in capsys.readouterr().err

    with limited_threads(1):
        assert main(["audit", str(path), "--folds", "3", "--epochs", "8", "--img-size", "32",
                     "--device", "cpu", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "Label audit: 30 labeled images, 3 folds x 8 epochs on cpu" in out
    assert "fold 3/3:" in out and "suspected label error" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("rank"))
    table = lines[header + 1 : header + 4]
    assert 1 <= len(table) <= 3
    assert any(str(wrong) in line and "stripes -> dark" in line for line in table), out
    with Project.open(path) as project:
        assert runs.list_runs(project) == [] and len(runs.list_runs(project, kind=None)) == 1

    assert main(["audit", str(path), "--show", "--top", "1"]) == 0
    assert "rank" in capsys.readouterr().out


def test_audit_notes_a_class_it_cannot_judge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.dsproj"
    with Project.create(path) as project:
        small_class_audit(project, tmp_path)
    assert main(["audit", str(path), "--show"]) == 0
    out = capsys.readouterr().out
    assert "1 suspected label error(s)" in out
    assert "Note: The audit model barely predicts 'stripes' (recall 0 % of its 6 images)" in out
