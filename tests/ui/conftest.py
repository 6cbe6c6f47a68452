"""GUI test setup: offscreen Qt, QSettings and config folders isolated from the user's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pytestqt.qtbot import QtBot

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any QApplication exists
os.environ.setdefault("QT_QUICK_BACKEND", "software")

import shutil
from pathlib import Path

import pytest

if TYPE_CHECKING:
    from densestudio.ui.main_window import MainWindow

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
NEU = SHARED / "datasets" / "neu-surface-defects"


@pytest.fixture(scope="session", autouse=True)
def _isolated_qsettings(tmp_path_factory: pytest.TempPathFactory) -> None:
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("qsettings")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(folder))
        QSettings.setPath(fmt, QSettings.Scope.SystemScope, str(folder / "system"))


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENSESTUDIO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("DENSESTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DENSESTUDIO_THEME", "light")
    # Who history and approvals record: the OS user unless a test (or the user-name
    # preference, which sets this variable) says otherwise; restored after each test.
    monkeypatch.delenv("DENSESTUDIO_USER", raising=False)
    # The Train tab's input size from the reference table: a speed measured in the background
    # would re-fill forms the tests fill (tests/ui/test_train_speed.py turns it on).
    monkeypatch.setenv("DENSESTUDIO_MEASURE_SPEED", "0")
    from densestudio.ui import settings
    from densestudio.ui.train_panel import TrainPanel

    settings.qsettings().clear()
    # The Train tab asks whether the ImageNet weights' server answers: never in tests.
    monkeypatch.setattr(TrainPanel, "online_probe", staticmethod(lambda: False))


@pytest.fixture
def window(qtbot: QtBot) -> Iterator[MainWindow]:
    from densestudio.ui.app import create_application
    from densestudio.ui.main_window import MainWindow
    from densestudio.ui.settings import Preferences

    create_application([])
    win = MainWindow(Preferences())
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


@pytest.fixture
def neu_subset(tmp_path: Path) -> Path:
    """Symlinks to 3 NEU images for each of 4 classes (read from ../shared, never copied)."""
    if not NEU.is_dir():
        pytest.skip("NEU dataset not available at ../shared/datasets")
    root = tmp_path / "neu"
    classes = sorted(p for p in NEU.iterdir() if p.is_dir())[:4]
    for class_dir in classes:
        (root / class_dir.name).mkdir(parents=True)
        for src in sorted(class_dir.iterdir())[:3]:
            try:
                (root / class_dir.name / src.name).symlink_to(src)
            except OSError:
                shutil.copy(src, root / class_dir.name / src.name)
    return root


def review_run(qtbot: QtBot, window: MainWindow, run_id: int) -> None:
    """``window.review_run`` and wait until the Review tab has read the run's predictions
    (they are read in a job, off the GUI thread)."""
    with qtbot.waitSignal(window.review_panel.loaded, timeout=60_000):
        window.review_run(run_id)
