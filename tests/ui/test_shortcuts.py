"""Keyboard shortcuts: no key is bound twice where both could fire (Qt then reports an
"ambiguous shortcut overload" and does nothing), and Ctrl+Shift+Z redoes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QMenu, QToolBar, QWidget
from pytestqt.qtbot import QtBot

from densestudio.core.importer import ImportOptions
from densestudio.ui.main_window import MainWindow
from densestudio.ui.window_menus import unique_keys
from tests.ml.conftest import write_images

WINDOW_WIDE = (Qt.ShortcutContext.WindowShortcut, Qt.ShortcutContext.ApplicationShortcut)
# Keys the gallery, viewer and audit list use without a modifier (labeling, moving).
TYPING_KEYS = {"Space", "Backspace", "Del", "Return", "Enter", "Left", "Right", "Up", "Down"}


def _bindings(window: MainWindow) -> list[tuple[str, object, Qt.ShortcutContext, list[QWidget]]]:
    """(key, owner, context, widgets it is attached to) for every action and QShortcut of
    the window, its docks, tabs and menus."""
    out = []
    for action in window.findChildren(QAction):
        keys = [k.toString() for k in action.shortcuts()]
        assert len(keys) == len(set(keys)), f"{action.text()!r} lists a key twice: {keys}"
        widgets = [w for w in action.associatedObjects()
                   if isinstance(w, QWidget) and not isinstance(w, QMenu | QToolBar)]
        out += [(k, action, action.shortcutContext(), widgets) for k in keys]
    for shortcut in window.findChildren(QShortcut):
        out += [(k.toString(), shortcut, shortcut.context(), [shortcut.parent()])
                for k in shortcut.keys()]
    return out


def _overlap(a: tuple, b: tuple) -> bool:
    """Could both fire for one key press (window-wide, or one widget inside the other)?"""
    (_, _, ctx_a, widgets_a), (_, _, ctx_b, widgets_b) = a, b
    if ctx_a in WINDOW_WIDE or ctx_b in WINDOW_WIDE:
        return True
    return any(x is y or x.isAncestorOf(y) or y.isAncestorOf(x)
               for x in widgets_a for y in widgets_b)


def _name(owner: object) -> str:
    return owner.text() if isinstance(owner, QAction) else type(owner).__name__


def test_no_shortcut_is_bound_twice(window: MainWindow, tmp_path: Path, qtbot: QtBot) -> None:
    write_images(tmp_path / "imgs", n_per_class=2)
    assert window.new_project(tmp_path / "keys.dsproj")
    with qtbot.waitSignal(window.importFinished, timeout=60_000):
        window.start_import([tmp_path / "imgs"], ImportOptions(labels_from_subfolders=True))
    qtbot.waitUntil(lambda: window.import_worker is None, timeout=30_000)
    window.label_menu.aboutToShow.emit()  # the per-class entries exist
    bindings = _bindings(window)
    assert {"Ctrl+Z", "Ctrl+Shift+Z", "F2"} <= {k for k, *_ in bindings}
    clashes = [
        f"{a[0]}: {_name(a[1])!r} and {_name(b[1])!r}"
        for i, a in enumerate(bindings) for b in bindings[i + 1:]
        if a[0] == b[0] and a[1] is not b[1] and _overlap(a, b)
    ]
    assert clashes == []
    # Window-wide keys never take a typing key: those label and move in the grids.
    plain = [k for k, _o, ctx, _w in bindings
             if ctx in WINDOW_WIDE and (len(k) == 1 or k in TYPING_KEYS)]
    assert plain == []


def test_ctrl_shift_z_redoes(window: MainWindow, tmp_path: Path, qtbot: QtBot) -> None:
    write_images(tmp_path / "imgs", n_per_class=2)
    assert window.new_project(tmp_path / "redo.dsproj")
    with qtbot.waitSignal(window.importFinished, timeout=60_000):
        window.start_import([tmp_path / "imgs"], ImportOptions(labels_from_subfolders=False))
    qtbot.waitUntil(lambda: window.import_worker is None, timeout=30_000)
    c = window.controller
    cls = c.add_class("scratch")
    window.gallery.setFocus()
    window.gallery.go_to_row(0)
    image_id = window.model.image_id(0)
    qtbot.keyClick(window.gallery, cls.shortcut)
    assert c.project.image(image_id).label_id == cls.id
    qtbot.keyClick(window.gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert c.project.image(image_id).label_id is None
    qtbot.keyClick(window.gallery, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert c.project.image(image_id).label_id == cls.id
    qtbot.keyClick(window.gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window.gallery, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert c.project.image(image_id).label_id == cls.id


def test_unique_keys_lists_each_key_once() -> None:
    redo = QKeySequence.StandardKey.Redo
    keys = [k.toString() for k in unique_keys(redo, "Ctrl+Shift+Z", "Ctrl+Y")]
    assert keys.count("Ctrl+Shift+Z") == 1 and keys.count("Ctrl+Y") == 1
    assert [k.toString() for k in unique_keys("F11", "F11")] == ["F11"]
