"""Gallery details a new user trips over: split badges on small tiles, zooming keeps the
current tile in view, and the count under the Unlabeled filter after labeling."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from densestudio.core.importer import ImportOptions
from densestudio.ui.gallery_view import MIN_TILE, SHORT_SPLIT_LABELS
from tests.ml.conftest import write_images

if TYPE_CHECKING:
    from densestudio.ui.main_window import MainWindow


def _open(qtbot: QtBot, window: MainWindow, tmp_path: Path, n_per_class: int, labels: bool) -> None:
    write_images(tmp_path / "imgs", n_per_class=n_per_class)
    assert window.new_project(tmp_path / "g.dsproj")
    with qtbot.waitSignal(window.importFinished, timeout=60_000):
        window.start_import([tmp_path / "imgs"], ImportOptions(labels_from_subfolders=labels))
    qtbot.waitUntil(lambda: window.import_worker is None, timeout=30_000)


def test_small_tiles_tell_train_from_test() -> None:
    assert len(set(SHORT_SPLIT_LABELS.values())) == 3  # not "T", "V", "T"
    assert SHORT_SPLIT_LABELS["train"] != SHORT_SPLIT_LABELS["test"]


def test_zoom_keeps_the_current_tile_in_view(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    _open(qtbot, window, tmp_path, n_per_class=40, labels=True)
    gallery = window.gallery
    window.filter_bar.tile_slider.setValue(MIN_TILE)
    gallery.setFocus()
    gallery.go_to_row(100)
    qtbot.waitUntil(lambda: gallery.viewport().rect().intersects(
        gallery.visualRect(gallery.currentIndex())))
    for _ in range(5):  # Ctrl++ five times
        qtbot.keyClick(gallery, Qt.Key.Key_Plus, Qt.KeyboardModifier.ControlModifier)
    assert gallery.delegate.tile == MIN_TILE + 5 * 16
    assert gallery.currentIndex().row() == 100
    assert gallery.selectionModel().isSelected(gallery.currentIndex())
    assert gallery.viewport().rect().intersects(gallery.visualRect(gallery.currentIndex()))
    qtbot.keyClick(gallery, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert gallery.viewport().rect().intersects(gallery.visualRect(gallery.currentIndex()))


def test_unlabeled_filter_count_follows_labeling(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    _open(qtbot, window, tmp_path, n_per_class=3, labels=False)
    c = window.controller
    cls = c.add_class("scratch")
    window.filter_bar.set_class(None)  # Unlabeled
    assert window.filter_bar.count_label.text() == "9 images"
    gallery = window.gallery
    gallery.setFocus()
    for row in range(4):
        gallery.go_to_row(row)
        qtbot.keyClick(gallery, cls.shortcut)
    assert window.model.rowCount() == 9  # the labeled tiles stay where they were
    qtbot.waitUntil(lambda: window.filter_bar.count_label.text()
                    == "5 of 9 images (4 shown no longer match)", timeout=5000)
    window.refresh_project()  # F5: the view is applied again
    assert window.model.rowCount() == 5
    assert window.filter_bar.count_label.text() == "5 of 9 images"


def test_changed_since_labeled_filter_tile_and_viewer(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """A file replaced after it was labeled (core marks it SOURCE_CHANGED): the Images tab
    finds it with the "Changed since labeled" filter, and its tooltip and the viewer say so."""
    import numpy as np
    from PIL import Image as PILImage

    from densestudio.core.constants import CHANGED_TEXT
    from densestudio.core.file_changes import check_files

    _open(qtbot, window, tmp_path, n_per_class=2, labels=True)
    project = window.controller.project
    victim = project.page(limit=1)[0]
    PILImage.fromarray(np.full((30, 30), 7, dtype=np.uint8), mode="L").save(victim.path)
    assert len(check_files(project).changed) == 1
    window.refresh_project()
    bar = window.filter_bar
    bar.show_changed()
    assert bar.image_filter().changed
    qtbot.waitUntil(lambda: window.model.rowCount() == 1, timeout=5000)
    model = window.model
    info = model.info(0)
    assert info is not None and info.id == victim.id
    tip = model.data(model.index(0), Qt.ItemDataRole.ToolTipRole)
    assert CHANGED_TEXT in tip
    window.gallery.go_to_row(0)
    qtbot.waitUntil(lambda: CHANGED_TEXT in window.viewer.details.text(), timeout=5000)
    bar.reset()
    bar.changed.emit()
    qtbot.waitUntil(lambda: window.model.rowCount() == 6, timeout=5000)
