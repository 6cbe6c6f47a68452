"""Images moved or deleted after import: flagged missing, skipped by training with a
warning, restored by relink."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from densestudio.cli import main as cli
from densestudio.core import runs
from densestudio.core.importer import ImportOptions, relink, run_import
from densestudio.core.store import ImageFilter, Project
from densestudio.ml.events import ImagesSkipped
from densestudio.ml.train import fit
from tests.ml.conftest import tiny_config, write_images


def test_training_skips_vanished_files_then_relink_restores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_images(tmp_path / "imgs", n_per_class=10)
    project = Project.create(tmp_path / "p.dsproj")
    run_import(project, [tmp_path / "imgs"], ImportOptions(labels_from_subfolders=True))
    # two files vanish after import, unnoticed by the project
    gone = sorted((tmp_path / "imgs" / "dark").iterdir())[:2]
    shutil.copytree(tmp_path / "imgs", tmp_path / "moved")
    for path in gone:
        path.unlink()
    events = []
    run_id = fit(project, tiny_config(epochs=1), on_event=events.append)
    skipped = [e for e in events if isinstance(e, ImagesSkipped)]
    assert len(skipped) == 1 and skipped[0].count == 2
    named = {example.split(":")[0] for example in skipped[0].examples}
    assert named == {p.name for p in gone}, "the warning names the unreadable files"
    assert runs.get_run(project, run_id).status == "finished"
    assert len(runs.run_images(project, run_id)) == 28, "the run's snapshot left them out"
    assert project.count_images(ImageFilter(missing=True)) == 2, "flagged in the project"
    assert project.count_images() == 30, "rows and labels are kept"
    # the CLI shows them too
    assert cli(["info", str(project.path)]) == 0
    assert "2 image file(s) are missing" in capsys.readouterr().out
    # relink finds the copies by content
    result = relink(project, [tmp_path / "moved"])
    assert (result.relinked, result.still_missing) == (2, 0)
    assert project.count_images(ImageFilter(missing=True)) == 0
    project.close()
