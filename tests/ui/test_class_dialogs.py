"""Class dialogs: Rename shows the whole name and names the class, a refused name is
explained in the dialog (which stays open); Merge names the source, has no default target
and says the source class disappears."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from densestudio.core.store import ImageFilter

if TYPE_CHECKING:
    from densestudio.ui.controller import ProjectController
    from densestudio.ui.main_window import MainWindow

LONG = "scratch_on_upper_surface_near_coil_edge_lot_7_second_shift_A"  # 60 characters


def _project(window: MainWindow, tmp_path: Path) -> ProjectController:
    from tests.ml.conftest import add_images, write_images

    assert window.new_project(tmp_path / "classes.dsproj")
    add_images(window.controller.project, write_images(tmp_path / "imgs", n_per_class=2))
    window.controller.reload()
    c = window.controller
    c.classesChanged.emit()
    return c


def test_rename_shows_the_whole_name_and_explains_a_refusal(
    window: MainWindow, tmp_path: Path
) -> None:
    c = _project(window, tmp_path)
    info = c.add_class(LONG)
    panel = window.class_panel
    panel.select_class(info.id)
    dialog = panel.rename_selected()
    assert dialog is not None and dialog.isVisible() and panel.dialog is dialog
    assert LONG in dialog.windowTitle() and LONG in dialog.label.text()
    assert dialog.edit.text() == LONG and dialog.edit.toolTip() == LONG
    assert dialog.edit.width() >= dialog.edit.fontMetrics().horizontalAdvance(LONG)

    # A name the project refuses: its message in the dialog, which stays open.
    dialog.edit.setText("dark")
    dialog.accept()
    assert dialog.isVisible() and dialog.error.isVisible()
    assert "already exists" in dialog.error.text() and "dark" in dialog.error.text()
    assert c.class_by_id(info.id).name == LONG and window.last_error is None
    dialog.edit.setText("  ")
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    assert not dialog.error.isVisible()  # typing clears the old message

    dialog.edit.setText("scratch")
    dialog.accept()
    assert not dialog.isVisible() and panel.dialog is None
    assert c.class_by_id(info.id).name == "scratch"
    c.undo_stack.undo()
    assert c.class_by_id(info.id).name == LONG


def test_merge_names_the_source_and_has_no_default_target(
    window: MainWindow, tmp_path: Path
) -> None:
    c = _project(window, tmp_path)
    names = {k.name: k for k in c.classes()}
    source, target = names["stripes"], names["bright"]
    panel = window.class_panel
    panel.select_class(source.id)
    dialog = panel.merge_selected()
    assert dialog is not None and dialog.isVisible()
    assert "stripes" in dialog.windowTitle()
    assert "Move the 2 images of class <b>'stripes'</b> into:" == dialog.label.text()
    assert "'stripes' then disappears from the project" in dialog.note.text()
    assert dialog.combo.currentIndex() == -1 and not dialog.ok.isEnabled()
    assert [dialog.combo.itemText(i) for i in range(dialog.combo.count())] == ["dark", "bright"]
    dialog.reject()  # Cancel: nothing happens
    assert c.class_by_id(source.id) is not None

    dialog = panel.merge_selected()
    dialog.combo.setCurrentIndex(dialog.combo.findText("bright"))
    assert dialog.ok.isEnabled()
    dialog.accept()
    assert c.class_by_id(source.id) is None
    assert c.project.count_images(ImageFilter(class_ids=(target.id,))) == 4
    assert panel.selected_class_ids() == [target.id]
    c.undo_stack.undo()
    assert c.class_by_id(source.id) is not None
