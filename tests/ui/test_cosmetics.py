"""Layout details (issue 16, item 15): nothing cut, nothing wrapping mid-figure, the Undo
button stays its size."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QToolButton

from densestudio.ui.viewer import human_size

if TYPE_CHECKING:
    from densestudio.ui.main_window import MainWindow

LONG = "scratch_on_upper_surface_near_coil_edge_lot_7_second_shift_A"


def test_undo_button_keeps_its_size_and_its_tooltip_names_the_step(
    window: MainWindow, tmp_path: Path
) -> None:
    assert window.new_project(tmp_path / "u.dsproj")
    button = window.toolbar.widgetForAction(window.undo_action)
    assert isinstance(button, QToolButton)
    window.controller.add_class(LONG)
    assert button.text() == "Undo" and button.sizeHint().width() < 200
    assert window.undo_action.toolTip() == f"Undo Add class '{LONG}'"
    assert LONG in window.undo_action.text()  # the Edit menu names it in full


def test_splits_table_shows_every_row(window: MainWindow, tmp_path: Path) -> None:
    assert window.new_project(tmp_path / "s.dsproj")
    table = window.split_panel.table
    assert table.height() >= (table.verticalHeader().length()
                              + table.horizontalHeader().height())  # "No split" not cut


def test_sizes_never_wrap_inside() -> None:
    assert human_size(22_835) == "22.3\u00a0KB" and " " not in human_size(512)


def test_train_button_and_outcome_stay_in_view_while_the_form_scrolls(
    window: MainWindow, tmp_path: Path
) -> None:
    """With the settings' explanations the form grew taller than a laptop screen: the Train
    button and the "Run #N finished: balanced accuracy ..." line were scrolled out of view."""
    from PySide6.QtWidgets import QScrollArea

    assert window.new_project(tmp_path / "t.dsproj")
    window.resize(780, 560)
    panel = window.train_panel
    window.show_panel(panel)
    window.show()
    scroll = next(w for w in panel.findChildren(QScrollArea) if w.isAncestorOf(panel.lr))
    for widget in (panel.train_button, panel.cancel_button, panel.message):
        assert not scroll.isAncestorOf(widget), "outside the scrolling form"
    assert not panel.train_button.visibleRegion().isEmpty()
