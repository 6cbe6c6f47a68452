"""End-to-end GUI tests (offscreen): new project, import, keyboard labeling, undo, filter,
reopen; drag-and-drop import; cancelling an import."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QItemSelection, QMimeData, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QWidget
from pytestqt.qtbot import QtBot

from densestudio.core.store import ImageFilter, Project

if TYPE_CHECKING:
    from densestudio.core.importer import ImportOptions, ImportReport
    from densestudio.ui.main_window import MainWindow


def _wait_import(qtbot: QtBot, window: MainWindow, timeout: int = 60_000) -> ImportReport:
    with qtbot.waitSignal(window.importFinished, timeout=timeout) as blocker:
        pass
    return blocker.args[0]


def _import_via_dialog(
    qtbot: QtBot, window: MainWindow, paths: Iterable[Path], subfolders: bool
) -> ImportReport:
    dialog = window.show_import_dialog(list(paths))
    assert dialog is not None and dialog.isVisible()
    dialog.subfolders.setChecked(subfolders)
    with qtbot.waitSignal(window.importFinished, timeout=60_000) as blocker:
        qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok),
                         Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.import_worker is None or not window.import_worker.running)
    return blocker.args[0]


def _labels(path: Path) -> dict[str, str | None]:
    with Project.open(path) as project:
        names = {c.id: c.name for c in project.classes()}
        return {i.name: names.get(i.label_id) for i in project.page(limit=10_000)}


def _press(
    qtbot: QtBot,
    widget: QWidget,
    key: Qt.Key,
    modifier: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier,
) -> None:
    qtbot.keyClick(widget, key, modifier)


def test_label_workflow_end_to_end(
    qtbot: QtBot,
    window: MainWindow,
    neu_subset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "inspect.dsproj"
    assert window.stack.currentWidget() is window.welcome
    assert window.new_project(path)
    assert window.stack.currentWidget() is window.tabs
    assert "No images yet" in window.gallery.empty_text

    report = _import_via_dialog(qtbot, window, [neu_subset], subfolders=False)
    assert report.added == 12 and not report.cancelled and not report.skipped
    assert window.model.rowCount() == 12
    assert window.report_dialog is None or not window.report_dialog.isVisible()

    # Classes through the class panel (its dialogs answered by the test).
    class_names = sorted(p.name for p in neu_subset.iterdir())
    for name in class_names:
        dialog = window.class_panel.add_class()
        dialog.edit.setText(name)
        dialog.accept()
        assert window.class_panel.dialog is None or not dialog.isVisible()
    classes = window.controller.classes()
    assert [c.name for c in classes] == class_names
    assert [c.shortcut for c in classes] == ["1", "2", "3", "4"]
    assert window.class_panel.tree.topLevelItem(0).text(0) == "1"

    # Keys: 1 labels the current image and auto-advances to the next unlabeled one.
    gallery = window.gallery
    gallery.setFocus()
    gallery.go_to_row(0)
    model = window.model
    _press(qtbot, gallery, Qt.Key.Key_1)
    assert model.info(0).label_id == classes[0].id
    assert gallery.currentIndex().row() == 1
    _press(qtbot, gallery, Qt.Key.Key_2)
    assert model.info(1).label_id == classes[1].id
    assert gallery.currentIndex().row() == 2

    # Arrow keys and space move; 0 and Backspace remove a label.
    _press(qtbot, gallery, Qt.Key.Key_Space)
    assert gallery.currentIndex().row() == 3
    _press(qtbot, gallery, Qt.Key.Key_Left)
    assert gallery.currentIndex().row() == 2

    # Bulk: select rows 4..9 (Shift-click range) and press 3.
    gallery.go_to_row(4)
    qtbot.mouseClick(gallery.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.ShiftModifier, gallery.visualRect(model.index(9)).center())
    assert len(window.selected_image_ids()) == 6
    _press(qtbot, gallery, Qt.Key.Key_3)
    bulk = [model.image_id(r) for r in range(4, 10)]
    assert all(model.info(r).label_id == classes[2].id for r in range(4, 10))
    assert gallery.currentIndex().row() == 9  # no auto-advance for a bulk label
    assert window.controller.counts(fresh=True).count(classes[2].id) == 6
    # Panels follow once the (debounced, background) recount lands.
    qtbot.waitUntil(lambda: window.class_panel.tree.topLevelItem(2).text(2) == "6")
    assert "8 of 12 images labeled" in window.class_panel.summary.text()

    # Undo/redo through the Edit menu's actions (their Ctrl+Z / Ctrl+Shift+Z keys are
    # pressed in tests/ui/test_shortcuts.py).
    window.undo_action.trigger()
    assert all(model.info(r).label_id is None for r in range(4, 10))
    window.redo_action.trigger()
    assert all(model.info(r).label_id == classes[2].id for r in range(4, 10))

    # Ctrl+A selects everything shown; Backspace unlabels the selection; undo restores it.
    gallery.selectAll()
    assert len(window.selected_image_ids()) == 12
    _press(qtbot, gallery, Qt.Key.Key_Backspace)
    assert window.controller.counts(fresh=True).count(None) == 12
    window.undo_action.trigger()
    assert window.controller.counts(fresh=True).count(None) == 12 - 8

    # Context-menu path: label one image as class 4 through the same call the menu uses.
    gallery.go_to_row(11)
    window.label_selection(classes[3].id)
    assert model.info(11).label_id == classes[3].id

    # Filter by class, unlabeled and file name.
    window.filter_bar.set_class(classes[2].id)
    assert model.rowCount() == 6
    assert {model.image_id(r) for r in range(6)} == set(bulk)
    assert window.filter_bar.count_label.text() == "6 of 12 images"
    window.filter_bar.set_class(None)  # unlabeled
    assert model.rowCount() == 12 - 9
    window.filter_bar.reset()
    window.filter_bar.text.setText(class_names[0][:5])
    qtbot.keyClick(window.filter_bar.text, Qt.Key.Key_Return)
    assert model.rowCount() == 3
    window.filter_bar.reset()
    window.apply_filter()
    assert model.rowCount() == 12

    # Sorting by class puts class 1 first.
    window.filter_bar.sort_combo.setCurrentIndex(window.filter_bar.sort_combo.findData("class"))
    assert model.info(0).label_id == classes[0].id

    expected = {model.info(r).name: window.controller.class_by_id(model.info(r).label_id)
                for r in range(12)}
    expected = {k: (v.name if v else None) for k, v in expected.items()}

    # Close the window: everything is already on disk.
    window.close()
    assert _labels(path) == expected

    # Reopen in a fresh window: labels and classes are back.
    from densestudio.ui.main_window import MainWindow
    from densestudio.ui.settings import Preferences, recent_projects

    assert recent_projects()[0] == str(path.resolve())
    again = MainWindow(Preferences())
    qtbot.addWidget(again)
    again.show()
    assert again.welcome.recent.count() == 1
    assert again.open_project(path)
    assert again.model.rowCount() == 12
    got = {again.model.info(r).name: again.model.class_of(again.model.info(r)) for r in range(12)}
    assert {k: (v.name if v else None) for k, v in got.items()} == expected
    again.close()


def _drop(window: MainWindow, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = window.rect().center()
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(pos.toPointF() if hasattr(pos, "toPointF") else pos,
                      Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, drop)


def test_drag_and_drop_import(
    qtbot: QtBot, window: MainWindow, neu_subset: Path, tmp_path: Path
) -> None:
    # Without a project a drop explains what to do.
    _drop(window, [neu_subset])
    assert "project" in (window.last_error or "").lower()

    assert window.new_project(tmp_path / "dropped.dsproj")
    _drop(window, [neu_subset])
    dialog = window.import_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.paths() == [neu_subset]
    assert dialog.subfolders.isChecked()  # the folder holds sub-folders: suggested as classes
    with qtbot.waitSignal(window.importFinished, timeout=60_000) as blocker:
        dialog.accept()
    report = blocker.args[0]
    assert report.added == 12
    names = sorted(c.name for c in window.controller.classes())
    assert names == sorted(p.name for p in neu_subset.iterdir())
    counts = window.controller.counts()
    assert counts.count(None) == 0 and counts.total == 12
    assert window.class_panel.tree.topLevelItemCount() == 5  # 4 classes + unlabeled
    # Dropping the same folder again adds nothing, and says so.
    assert window.import_dialog is None
    _drop(window, [neu_subset])
    with qtbot.waitSignal(window.importFinished, timeout=60_000) as blocker:
        window.import_dialog.accept()
    assert blocker.args[0].added == 0 and blocker.args[0].already_in_project == 12


@pytest.fixture
def many_images(tmp_path: Path) -> Path:
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1500):
        Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(
            folder / f"img_{i:05d}.png", compress_level=0)
    return folder


def test_cancel_import(qtbot: QtBot, window: MainWindow, many_images: Path, tmp_path: Path) -> None:
    assert window.new_project(tmp_path / "cancel.dsproj")
    worker = window.start_import([many_images])
    assert worker is not None
    assert window.import_progress.isVisible()
    with qtbot.waitSignal(
        worker.event, timeout=60_000,
        check_params_cb=lambda e: getattr(e, "phase", "") == "importing" and e.done > 0,
    ):
        pass
    # The window stays responsive: labels can be added while the import runs.
    assert window.controller.add_class("ok") is not None
    with qtbot.waitSignal(window.importFinished, timeout=60_000) as blocker:
        qtbot.mouseClick(window.import_progress.cancel_button, Qt.MouseButton.LeftButton)
    report = blocker.args[0]
    assert report.cancelled
    assert report.added < 1500
    qtbot.waitUntil(lambda: not window.import_progress.isVisible())
    # What was committed stays, and the gallery shows exactly that.
    assert window.model.rowCount() == window.controller.project.count_images() == report.added
    assert window.report_dialog is not None and window.report_dialog.isVisible()
    assert "cancelled" in window.report_dialog.windowTitle().lower()
    window.report_dialog.accept()
    # Importing again picks up the rest.
    with qtbot.waitSignal(window.importFinished, timeout=60_000) as blocker:
        window.start_import([many_images])
    assert blocker.args[0].added + report.added == 1500
    assert window.model.rowCount() == 1500


def test_import_report_lists_skipped_files(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("L", (16, 16), 90).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "empty.jpg").write_bytes(b"")
    assert window.new_project(tmp_path / "mixed.dsproj")
    with qtbot.waitSignal(window.importFinished, timeout=60_000) as blocker:
        window.start_import([folder])
    report = blocker.args[0]
    assert report.added == 1 and len(report.skipped) == 2
    dialog = window.report_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.table.rowCount() == 2
    reasons = {dialog.table.item(r, 1).text() for r in range(2)}
    assert all(reasons)
    dialog.accept()


def test_tile_context_menu_selects_and_lists_classes(
    qtbot: QtBot,
    window: MainWindow,
    neu_subset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert window.new_project(tmp_path / "menu.dsproj")
    with qtbot.waitSignal(window.importFinished, timeout=60_000):
        window.start_import([neu_subset], _options(True))
    shown = []
    monkeypatch.setattr(window, "exec_menu", lambda menu, _pos: shown.append(
        [a.text() for a in menu.actions()]))
    rect = window.gallery.visualRect(window.model.index(2))
    window._tile_menu(rect.center())
    assert window.gallery.currentIndex().row() == 2
    texts = shown[0]
    assert texts[0] == "1 image selected"
    assert sum(t.startswith("Label as ") for t in texts) == 4
    assert any(t.startswith("Remove Label") for t in texts)


def _options(subfolders: bool) -> ImportOptions:
    from densestudio.core.importer import ImportOptions

    return ImportOptions(labels_from_subfolders=subfolders)


def test_filter_by_split_and_empty_state(
    qtbot: QtBot, window: MainWindow, neu_subset: Path, tmp_path: Path
) -> None:
    assert window.new_project(tmp_path / "split.dsproj")
    with qtbot.waitSignal(window.importFinished, timeout=60_000):
        window.start_import([neu_subset], _options(True))
    project = window.controller.project
    window.filter_bar.set_split("test")
    n_test = project.count_images(ImageFilter(split="test"))
    assert window.model.rowCount() == n_test
    window.filter_bar.text.setText("no-such-file")
    window.filter_bar._apply_now()
    assert window.model.rowCount() == 0
    assert window.gallery.empty_text == "No images match the filter."
    assert window.viewer.info is None
    assert window.model.ids_in_selection(QItemSelection()) == []
