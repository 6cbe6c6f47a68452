"""GUI: missing files are flagged on refresh, relink restores them; images added by another
process (CLI) appear on refresh."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pytestqt.qtbot import QtBot

from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.store import ImageFilter, Project
from tests.core.bad_files import make_class_folders

if TYPE_CHECKING:
    from densestudio.ui.main_window import MainWindow


def test_refresh_flags_missing_and_relink_restores(
    window: MainWindow, qtbot: QtBot, tmp_path: Path
) -> None:
    data = make_class_folders(tmp_path / "data", classes=("a", "b"), per_class=3)
    path = tmp_path / "p.dsproj"
    with Project.create(path) as p:
        run_import(p, [data], ImportOptions(labels_from_subfolders=True))
    window.open_project(path)
    shutil.move(data, tmp_path / "moved")
    window.refresh_project()
    project = window.controller.project
    assert project.count_images(ImageFilter(missing=True)) == 6
    assert "6 missing" in window.statusBar().currentMessage()
    with qtbot.waitSignal(window.relinkFinished, timeout=30000) as signal:
        window.start_relink(tmp_path / "moved")
    assert signal.args[0].relinked == 6
    assert project.count_images(ImageFilter(missing=True)) == 0


def test_refresh_shows_images_imported_by_the_cli(window: MainWindow, tmp_path: Path) -> None:
    first = make_class_folders(tmp_path / "first", classes=("a",), per_class=2)
    later = make_class_folders(tmp_path / "later", classes=("b",), per_class=4, seed=9)
    path = tmp_path / "p.dsproj"
    with Project.create(path) as p:
        run_import(p, [first], ImportOptions(labels_from_subfolders=True))
    window.open_project(path)
    assert window.model.rowCount() == 2
    out = subprocess.run([sys.executable, "-m", "densestudio", "import", str(path), str(later),
                          "--labels-from-subfolders"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    window.refresh_project()
    assert window.model.rowCount() == 6
    assert {c.name for c in window.controller.classes()} == {"a", "b"}
