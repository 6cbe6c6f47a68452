"""The Train tab's recommended settings (issue 11 item 2, issue 16 item 4): what was chosen
and why is shown, it follows the project's labels, and the user's own edits are kept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from densestudio.core.importer import ImportOptions
from tests.ml.conftest import write_images

if TYPE_CHECKING:
    from densestudio.ui.main_window import MainWindow


def _import(qtbot: QtBot, window: MainWindow, folder: Path) -> None:
    with qtbot.waitSignal(window.importFinished, timeout=60_000):
        window.start_import([folder], ImportOptions(labels_from_subfolders=True))
    qtbot.waitUntil(lambda: window.import_worker is None, timeout=30_000)


def test_recommendation_follows_the_labels_and_says_why(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    panel = window.train_panel
    assert window.new_project(tmp_path / "p.dsproj")
    window.show_panel(panel)
    assert panel.data_label.text().startswith("0 labeled images")
    assert panel.reasons_label.text() == ""

    # A balanced first import: no imbalance handling, reasons on screen.
    write_images(tmp_path / "a", 10, classes=2)
    _import(qtbot, window, tmp_path / "a")
    qtbot.waitUntil(lambda: panel.data_label.text().startswith("20 labeled"), timeout=10_000)
    assert panel.config().balance == "none"
    assert "balanced accuracy" in panel.reasons_label.text()
    assert panel.monitor.currentData() == "val_balanced_acc"
    assert panel.keep_aspect.isChecked() and panel.budget_on.isChecked()

    # Many more images of one class: the tab notices without "Recommended settings".
    write_images(tmp_path / "b", 60, seed=1, classes=1)
    _import(qtbot, window, tmp_path / "b")
    qtbot.waitUntil(lambda: panel.data_label.text().startswith("80 labeled"), timeout=10_000)
    assert panel.config().balance != "none"
    assert "imbalanced" in panel.reasons_label.text()

    # The user picks their own balance: later imports no longer overwrite the form.
    panel.balance.setCurrentIndex(panel.balance.findData("weighted_loss"))
    panel.balance.activated.emit(panel.balance.currentIndex())
    write_images(tmp_path / "c", 5, seed=2, classes=2)
    with qtbot.waitSignal(window.controller.countsChanged, timeout=10_000):
        _import(qtbot, window, tmp_path / "c")
    assert panel.config().balance == "weighted_loss"
    qtbot.mouseClick(panel.defaults_button, Qt.MouseButton.LeftButton)
    assert panel.data_label.text().startswith("90 labeled")
    assert panel.config().balance != "weighted_loss"


def test_time_budget_and_aspect_ratio_are_the_users_to_change(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    panel = window.train_panel
    write_images(tmp_path / "a", 6, classes=2)
    assert window.new_project(tmp_path / "p.dsproj")
    _import(qtbot, window, tmp_path / "a")
    window.show_panel(panel)
    qtbot.waitUntil(lambda: panel.data_label.text().startswith("12 labeled"), timeout=10_000)
    panel.budget.setValue(3)
    assert panel.config().time_budget_s == 180.0
    panel.budget_on.setChecked(False)
    assert panel.config().time_budget_s is None and panel.epochs_label.text() == "Epochs"
    panel.keep_aspect.setChecked(False)
    assert panel.config().fit == "stretch" and "squashed" in panel.canvas_label.text()


def test_models_are_listed_smallest_first(window: MainWindow) -> None:
    from densestudio.ml.zoo import build_model

    combo = window.train_panel.arch
    archs = [combo.itemData(i) for i in range(combo.count())]
    sizes = [sum(p.numel() for p in build_model(a, 2, 3).parameters()) for a in archs]
    assert sizes == sorted(sizes)
