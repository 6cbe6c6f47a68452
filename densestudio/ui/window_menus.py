"""The main window's actions, menus, toolbar and small dialogs (shortcuts, preferences,
about), and the app's icon. A mixin of ``MainWindow``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QItemSelectionModel, QPoint, Qt, QUrl
from PySide6.QtGui import (
    QAction,
    QDesktopServices,
    QGuiApplication,
    QIcon,
    QKeySequence,
)
from PySide6.QtWidgets import QMainWindow, QMenu, QMessageBox, QStyle

from densestudio import __version__
from densestudio.ui import settings as app_settings
from densestudio.ui.class_panel import swatch
from densestudio.ui.signoff_dialogs import add_golden_actions

if TYPE_CHECKING:
    from PySide6.QtGui import QUndoGroup
    from PySide6.QtWidgets import QDockWidget

    from densestudio.core.db import ServerURL
    from densestudio.ui.class_panel import ClassPanel
    from densestudio.ui.controller import ProjectController
    from densestudio.ui.gallery_model import GalleryModel
    from densestudio.ui.gallery_view import GalleryView
    from densestudio.ui.preferences_dialog import PreferencesDialog
    from densestudio.ui.review_panel import ReviewPanel
    from densestudio.ui.settings import Preferences
    from densestudio.ui.viewer import ImageViewer
    from densestudio.ui.welcome import WelcomeView


def _resources_dir() -> Path:
    """Icons: resources/ at the repository root (a source checkout or editable install), or
    the densestudio/resources package a wheel installs them as."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir.parent / "resources", package_dir / "resources"):
        if (candidate / "densestudio.svg").is_file():
            return candidate
    return package_dir / "resources"


RESOURCES = _resources_dir()


def app_icon() -> QIcon:
    icon = QIcon()
    for name in ("densestudio.svg", "densestudio.png"):
        path = RESOURCES / name
        if path.is_file():
            icon.addFile(str(path))
    return icon



if TYPE_CHECKING:  # a mixin of the main window: typed as one, a plain class at run time
    _Window = QMainWindow
else:
    _Window = object


class WindowMenus(_Window):
    """Actions, menus and the tile context menu of ``MainWindow``."""

    if TYPE_CHECKING:  # what the menus use of the window
        controller: ProjectController | None
        prefs: Preferences
        undo_group: QUndoGroup
        welcome: WelcomeView
        model: GalleryModel
        gallery: GalleryView
        viewer: ImageViewer
        class_panel: ClassPanel
        review_panel: ReviewPanel
        class_dock: QDockWidget
        split_dock: QDockWidget

        def ask_new_project(self) -> None: ...
        def ask_open_project(self) -> None: ...
        def ask_open_shared_project(self) -> None: ...
        def open_project(self, path: str | Path | ServerURL) -> bool: ...
        def open_demo_project(self) -> None: ...
        def close_project(self) -> None: ...
        def show_import_dialog(self, paths: list[Path] | None = None) -> object: ...
        def start_relink(self, folder: Path | None = None) -> object: ...
        def refresh_project(self) -> None: ...
        def verify_records(self, quiet: bool = False) -> object: ...
        def show_export_dialog(self, run_id: int | None = None) -> object: ...
        def selected_image_ids(self) -> list[int]: ...
        def label_selection(self, class_id: int | None) -> None: ...
        def go_to_next_unlabeled(self, quiet: bool = False) -> bool: ...
        def exec_menu(self, menu: QMenu, global_pos: QPoint) -> None: ...
        def toggle_full_screen(self) -> None: ...
        def _step_tiles(self, delta: int) -> None: ...
        def _on_auto_advance(self, on: bool) -> None: ...

    def _icon(self, theme: str, fallback: QStyle.StandardPixmap) -> QIcon:
        icon = QIcon.fromTheme(theme)
        return icon if not icon.isNull() else self.style().standardIcon(fallback)

    def _action(self, text: str, slot: Callable | None = None,
                shortcut: str | QKeySequence.StandardKey | None = None,
                icon: QIcon | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if slot is not None:
            action.triggered.connect(slot)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if icon is not None:
            action.setIcon(icon)
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        return action

    def _make_actions(self) -> None:
        SP = QStyle.StandardPixmap
        K = QKeySequence.StandardKey
        self.new_action = self._action("&New Project…", self.ask_new_project, K.New,
                                       self._icon("document-new", SP.SP_FileIcon),
                                       "Create a new project file")
        self.open_action = self._action("&Open Project…", self.ask_open_project, K.Open,
                                        self._icon("document-open", SP.SP_DialogOpenButton),
                                        "Open a project file")
        self.open_shared_action = self._action(
            "Open &Shared Project…", self.ask_open_shared_project,
            tip="Open a project on a PostgreSQL server that the team labels together")
        self.demo_action = self._action("Open &Demo Project", self.open_demo_project,
                                        tip="A small ready-to-train project of generated images")
        self.import_action = self._action("&Import Images…", lambda: self.show_import_dialog(),
                                          "Ctrl+I", self._icon("list-add", SP.SP_DirOpenIcon),
                                          "Import folders or files into the project")
        self.relink_action = self._action(
            "Re&link Moved Images…", lambda: self.start_relink(), tip="Find images that were "
            "moved or renamed, by their content, in a folder you choose")
        self.refresh_action = self._action(
            "&Refresh", self.refresh_project, K.Refresh,
            tip="Show images another program added and check for missing files")
        self.close_action = self._action("&Close Project", self.close_project, K.Close)
        self.quit_action = self._action("&Quit", self.close, K.Quit)
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)

        self.undo_action = self.undo_group.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(K.Undo)
        self.undo_action.setIcon(self._icon("edit-undo", SP.SP_ArrowBack))
        # The toolbar button keeps a short label; the menu and tooltip name the step (a
        # 60-character class name made the button grow across the toolbar).
        self.undo_action.setIconText("Undo")
        self.redo_action = self.undo_group.createRedoAction(self, "&Redo")
        # The platform's Redo keys may already include Ctrl+Shift+Z: a key listed twice on
        # one action is an "ambiguous shortcut" and does nothing.
        self.redo_action.setShortcuts(unique_keys(K.Redo, "Ctrl+Shift+Z"))
        self.redo_action.setIcon(self._icon("edit-redo", SP.SP_ArrowForward))
        self.redo_action.setIconText("Redo")
        for action, verb, signal in ((self.undo_action, "Undo", self.undo_group.undoTextChanged),
                                     (self.redo_action, "Redo", self.undo_group.redoTextChanged)):
            signal.connect(lambda text, a=action, v=verb: a.setToolTip(f"{v} {text}".strip()))
        self.select_all_action = self._action("Select &All", self.gallery.selectAll, K.SelectAll)
        self.select_all_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.gallery.addAction(self.select_all_action)
        self.next_unlabeled_action = self._action(
            "Go to Next &Unlabeled", self.go_to_next_unlabeled, "Ctrl+U",
            tip="Jump to the next image without a label")

        self.auto_advance_action = self._action(
            "&Auto-advance to Next Unlabeled",
            tip="After labeling one image, jump to the next image without a label")
        self.auto_advance_action.setCheckable(True)
        self.auto_advance_action.setChecked(self.prefs.auto_advance)
        self.auto_advance_action.toggled.connect(self._on_auto_advance)
        self.unlabel_action = self._action("&Remove Label", lambda: self.label_selection(None),
                                           tip="Remove the label of the selected images (0)")
        self.add_class_action = self._action("Add &Class…", self.class_panel.add_class,
                                             "Ctrl+Shift+N")

        self.fullscreen_action = self._action("&Full Screen", self.toggle_full_screen,
                                              K.FullScreen)
        self.fullscreen_action.setShortcuts(unique_keys("F11", K.FullScreen))
        self.fullscreen_action.setCheckable(True)
        self.bigger_action = self._action("&Larger Tiles", lambda: self._step_tiles(16),
                                          K.ZoomIn)
        self.smaller_action = self._action("&Smaller Tiles", lambda: self._step_tiles(-16),
                                           K.ZoomOut)
        self.shortcuts_action = self._action("&Keyboard Shortcuts", self.show_shortcuts, "F1")
        self.preferences_action = self._action("&Preferences…", self.show_preferences,
                                               QKeySequence.StandardKey.Preferences,
                                               tip="Your name for the label history and "
                                               "approvals; labeling behaviour")
        self.preferences_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.report_action = self._action(
            "&Validation Report…", lambda: self.review_panel.show_report_dialog(),
            tip="Write a run's validation report: one HTML file that opens offline")
        self.export_action = self._action(
            "&Export Model…", lambda: self.show_export_dialog(), "Ctrl+E",
            tip="Export the approved run (or another) as a model file for the line")
        self.verify_action = self._action(
            "&Verify Records…", lambda: self.verify_records(quiet=False),
            tip="Check that the label history and the approvals were not edited outside "
            "DenseStudio")
        self.about_action = self._action("&About DenseStudio", self.show_about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        self.project_actions = [self.import_action, self.relink_action, self.refresh_action,
                                self.close_action, self.select_all_action,
                                self.next_unlabeled_action, self.unlabel_action,
                                self.add_class_action, self.bigger_action, self.smaller_action,
                                self.report_action, self.export_action,
                                self.verify_action]

    def _make_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.new_action, self.open_action, self.open_shared_action])
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addAction(self.demo_action)
        file_menu.addSeparator()
        file_menu.addAction(self.import_action)
        file_menu.addAction(self.relink_action)
        file_menu.addAction(self.refresh_action)
        file_menu.addSeparator()
        file_menu.addActions([self.export_action, self.report_action, self.verify_action])
        file_menu.addSeparator()
        file_menu.addAction(self.close_action)
        file_menu.addAction(self.quit_action)

        edit_menu = bar.addMenu("&Edit")
        edit_menu.addActions([self.undo_action, self.redo_action])
        edit_menu.addSeparator()
        edit_menu.addActions([self.select_all_action, self.next_unlabeled_action])
        edit_menu.addSeparator()
        edit_menu.addAction(self.preferences_action)

        self.label_menu = bar.addMenu("&Label")
        self.label_menu.aboutToShow.connect(self._fill_label_menu)

        view_menu = bar.addMenu("&View")
        view_menu.addActions([self.bigger_action, self.smaller_action])
        view_menu.addSeparator()
        view_menu.addAction(self.class_dock.toggleViewAction())
        view_menu.addAction(self.split_dock.toggleViewAction())
        view_menu.addSeparator()
        view_menu.addAction(self.fullscreen_action)

        help_menu = bar.addMenu("&Help")
        help_menu.addActions([self.shortcuts_action, self.about_action])

        self.toolbar = self.addToolBar("Main")
        self.toolbar.setObjectName("mainToolbar")
        self.toolbar.setMovable(False)
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toolbar.addActions([self.new_action, self.open_action, self.import_action])
        self.toolbar.addSeparator()
        self.toolbar.addActions([self.undo_action, self.redo_action])
        self._fill_label_menu()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        items = app_settings.recent_projects()
        for path in items:
            action = self.recent_menu.addAction(app_settings.recent_title(path))
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(lambda _=False, p=path: self.open_project(p))
        if not items:
            self.recent_menu.addAction("No recent projects").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear List", self._clear_recent)

    def _clear_recent(self) -> None:
        app_settings.clear_recent_projects()
        self.welcome.set_recent([])

    # ---------------------------------------------------------------- demo

    def _fill_label_menu(self) -> None:
        menu = self.label_menu
        menu.clear()
        self._add_label_actions(menu)
        menu.addSeparator()
        menu.addAction(self.next_unlabeled_action)
        menu.addAction(self.auto_advance_action)
        menu.addSeparator()
        menu.addAction(self.add_class_action)

    def _add_label_actions(self, menu: QMenu) -> None:
        classes = self.controller.classes() if self.controller else []
        for cls in classes:
            key = f"\t{cls.shortcut}" if cls.shortcut else ""
            action = menu.addAction(f"Label as {cls.name.replace('&', '&&')}{key}")
            action.setIcon(swatch(cls.color))
            action.triggered.connect(lambda _=False, cid=cls.id: self.label_selection(cid))
        if not classes:
            menu.addAction("No classes yet (add one in the Classes panel)").setEnabled(False)
        self.unlabel_action.setText("Remove Label\t0")
        menu.addAction(self.unlabel_action)

    def _tile_menu(self, pos: QPoint) -> None:
        index = self.gallery.indexAt(pos)
        if index.isValid() and not self.gallery.selectionModel().isSelected(index):
            self.gallery.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        ids = self.selected_image_ids()
        if not ids:
            return
        menu = QMenu(self)
        n = len(ids)
        header = menu.addAction(f"{n:,} image{'s' if n != 1 else ''} selected")
        header.setEnabled(False)
        assert self.controller is not None  # there are tiles
        self._add_label_actions(menu)
        menu.addSeparator()
        add_golden_actions(menu, self.controller.project, ids, self.controller.golden_changed)
        menu.addSeparator()
        if index.isValid():
            info = self.model.info(index.row())
            if info is not None:
                menu.addAction("Open in Viewer", self.viewer.setFocus)
                menu.addAction("Copy Path",
                               lambda: QGuiApplication.clipboard().setText(info.path))
                menu.addAction("Show in File Manager", lambda: QDesktopServices.openUrl(
                    QUrl.fromLocalFile(str(Path(info.path).parent))))
        self.exec_menu(menu, self.gallery.viewport().mapToGlobal(pos))

    def show_shortcuts(self) -> None:
        text = (
            "<table cellspacing=6>"
            "<tr><td><b>1 – 9</b></td><td>label the selected images with that class</td></tr>"
            "<tr><td><b>0</b>, Backspace</td><td>remove the label</td></tr>"
            "<tr><td>Arrows, Space</td><td>move to the next / previous image</td></tr>"
            "<tr><td>Shift/Ctrl+click, drag</td><td>select several images</td></tr>"
            "<tr><td>Ctrl+A</td><td>select all shown images</td></tr>"
            "<tr><td>Ctrl+U</td><td>next unlabeled image</td></tr>"
            "<tr><td>Ctrl+Z, Ctrl+Shift+Z</td><td>undo, redo</td></tr>"
            "<tr><td>Enter</td><td>open the image in the viewer (F: fit, Ctrl+0: 1:1)</td></tr>"
            "<tr><td>Ctrl+I</td><td>import images</td></tr>"
            "<tr><td>F11</td><td>full screen</td></tr></table>"
        )
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", text,
                          QMessageBox.StandardButton.Close, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def show_preferences(self) -> PreferencesDialog:
        from densestudio.ui.preferences_dialog import PreferencesDialog

        dialog = PreferencesDialog(self.prefs, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._apply_preferences(dialog))
        dialog.open()
        return dialog

    def _apply_preferences(self, dialog: PreferencesDialog) -> None:
        dialog.apply()
        name = app_settings.apply_user_name(self.prefs)
        self.auto_advance_action.setChecked(self.prefs.auto_advance)
        app_settings.save_preferences(self.prefs)
        self.statusBar().showMessage(f"Label changes and approvals are recorded as '{name}'.",
                                     6000)

    def show_about(self) -> None:
        QMessageBox.about(
            self, "About DenseStudio",
            f"<b>DenseStudio {__version__}</b><p>Label images, train a DenseNet, review and "
            "export — locally and offline. Your images never leave this computer.</p>")


def unique_keys(*keys: str | QKeySequence.StandardKey) -> list[QKeySequence]:
    """Key sequences for one action, each once (a standard key counts with all of the
    platform's bindings for it)."""
    out: list[QKeySequence] = []
    for key in keys:
        found = (QKeySequence.keyBindings(key) if isinstance(key, QKeySequence.StandardKey)
                 else [QKeySequence(key)])
        out += [k for k in found if not k.isEmpty() and k not in out]
    return out
