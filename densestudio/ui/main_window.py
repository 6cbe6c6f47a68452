"""The main window: welcome view or the open project (gallery, viewer, class and split docks).

Layout: a QStackedWidget switches between the welcome view and a QTabWidget whose first tab
("Images") holds the filter bar, the thumbnail grid and the viewer. Later panels (Train,
Runs, Review) are added as tabs with ``add_tab`` or as docks; the class and split panels are
docks on the left. The window is the app's assembly and its ``AppContext`` (ui.context):
panels get it, never import this module. Its flows (import, relink, demo, drag-and-drop,
records) are in ``ui.project_flows``, its actions and menus in ``ui.window_menus``. Long work
runs through one ``JobRunner``; the window stays responsive and closing a project or
quitting cancels and waits for every job.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QModelIndex, QPoint, Qt, Signal
from PySide6.QtGui import (
    QCloseEvent,
    QMouseEvent,
    QUndoGroup,
)
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from densestudio.core.db import ServerURL
from densestudio.core.errors import DenseStudioError
from densestudio.core.offline import QueueState
from densestudio.core.store import PROJECT_SUFFIX, ImageInfo, Project
from densestudio.ui import settings as app_settings
from densestudio.ui.audit_panel import AuditPanel
from densestudio.ui.class_panel import ClassPanel
from densestudio.ui.controller import ProjectController
from densestudio.ui.filter_bar import FilterBar
from densestudio.ui.gallery_model import GalleryModel
from densestudio.ui.gallery_view import GalleryView
from densestudio.ui.heatmaps import HeatmapService
from densestudio.ui.import_dialog import ImportDialog, ImportProgressWidget, ImportReportDialog
from densestudio.ui.project_flows import ProjectFlows
from densestudio.ui.review_panel import ReviewPanel
from densestudio.ui.settings import Preferences
from densestudio.ui.split_panel import SplitPanel
from densestudio.ui.thumbnail_loader import ThumbnailLoader
from densestudio.ui.train_panel import TrainPanel
from densestudio.ui.viewer import ImageViewer
from densestudio.ui.welcome import WelcomeView
from densestudio.ui.window_menus import WindowMenus, app_icon
from densestudio.ui.workers import JobRunner, Worker

if TYPE_CHECKING:
    from densestudio.core.importer import ImportReport
    from densestudio.core.signoff import VerificationReport
    from densestudio.core.thumbnails import ThumbnailCache
    from densestudio.ui.export_dialog import ExportDialog

log = logging.getLogger(__name__)

class GalleryArea(GalleryView):
    """The grid, plus a centred hint when it has nothing to show."""

    empty_text = ""


class TrainingIndicator(QProgressBar):
    """A small bar in the status bar while a run trains; a click shows the Train tab."""

    clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMaximumWidth(260)
        self.setMaximumHeight(18)
        self.setTextVisible(True)
        self.setToolTip("A run is training: click to see the Train tab")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.hide()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self.clicked.emit()
        super().mouseReleaseEvent(event)


class MainWindow(ProjectFlows, WindowMenus, QMainWindow):
    projectOpened = Signal(object)  # Path of the file, or the db.ServerURL
    projectClosed = Signal()
    importFinished = Signal(object)  # ImportReport (also when cancelled)
    relinkFinished = Signal(object)  # RelinkResult

    def __init__(self, prefs: Preferences | None = None) -> None:
        super().__init__()
        self.prefs = prefs or app_settings.load_preferences()
        app_settings.apply_user_name(self.prefs)  # who history and approvals record
        self.controller: ProjectController | None = None
        self._matching = 0  # images matching the gallery's filter now (see _recount)
        self.jobs = JobRunner(self.show_error, self)
        self.import_worker: Worker | None = None
        self.import_dialog: ImportDialog | None = None
        self.report_dialog: ImportReportDialog | None = None
        self.last_import_report: ImportReport | None = None
        self.last_error: str | None = None
        self.last_verification: VerificationReport | None = None  # the newest records check
        self.icon = app_icon()
        self.setWindowIcon(self.icon)
        self.setWindowTitle("DenseStudio")
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks
                            | QMainWindow.DockOption.AllowTabbedDocks)

        self.undo_group = QUndoGroup(self)
        self.loader = ThumbnailLoader(parent=self)
        self.model = GalleryModel(None, self.loader, self)

        # Central: welcome <-> project tabs.
        self.welcome = WelcomeView(self.icon, self)
        self.filter_bar = FilterBar(self)
        self.gallery = GalleryArea(self)
        self.gallery.setModel(self.model)
        self.viewer = ImageViewer(self)
        self.heatmaps = HeatmapService(self, self.jobs)  # shared by the viewer and the review tiles
        self.viewer.set_heatmap_service(self.heatmaps)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(self.gallery)
        self.splitter.addWidget(self.viewer)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        images_page = QWidget(self)
        images_layout = QVBoxLayout(images_page)
        images_layout.setContentsMargins(0, 0, 0, 0)
        images_layout.setSpacing(0)
        images_layout.addWidget(self.filter_bar)
        images_layout.addWidget(self.splitter, 1)
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(images_page, "Images")
        self.train_panel = TrainPanel(self, self)
        self.review_panel = ReviewPanel(self, self)
        self.export_dialog: ExportDialog | None = None
        self.add_tab(self.train_panel, "Train", scroll=True)
        self.add_tab(self.review_panel, "Review", scroll=True)
        self.audit_panel = AuditPanel(self, self)
        self.add_tab(self.audit_panel, "Label audit", scroll=True)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.tabs)
        self.setCentralWidget(self.stack)

        # Docks.
        self.class_panel = ClassPanel(self)
        self.split_panel = SplitPanel(self, self.jobs)
        self.class_dock = self._dock("Classes", self.class_panel, "classesDock")
        # The Splits panel scrolls in a short dock instead of drawing its rows over each other.
        self.split_dock = self._dock("Splits", _scrolling(self.split_panel), "splitsDock")
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.class_dock)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.split_dock)

        # Status bar.
        self.status_count = QLabel("", self)
        self.import_progress = ImportProgressWidget(self)
        self.import_progress.hide()
        self.import_progress.cancelRequested.connect(self.cancel_import)
        self.connection_status = QLabel("", self)  # a shared project: online / offline
        self.connection_status.setObjectName("connectionStatus")
        self.connection_status.hide()
        self.training_indicator = TrainingIndicator(self)
        self.training_indicator.clicked.connect(lambda: self.show_tab(self.train_panel))
        self.statusBar().addPermanentWidget(self.training_indicator)
        self.statusBar().addPermanentWidget(self.import_progress)
        self.statusBar().addPermanentWidget(self.connection_status)
        self.statusBar().addPermanentWidget(self.status_count)

        self._make_actions()
        self._make_menus()
        self._connect()
        self.filter_bar.tile_slider.setValue(self.prefs.tile_size)
        self.gallery.set_tile_size(self.prefs.tile_size)
        self._restore_geometry()
        self._show_welcome()

    # ================================================================ construction
    def _dock(self, title: str, widget: QWidget, name: str) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        return dock

    def _connect(self) -> None:
        w = self.welcome
        w.newRequested.connect(self.ask_new_project)
        w.openRequested.connect(self.ask_open_project)
        w.demoRequested.connect(self.open_demo_project)
        w.recentRequested.connect(self.open_project)

        self.filter_bar.changed.connect(self.apply_filter)
        self.filter_bar.tileSizeChanged.connect(self._on_tile_size)
        self.model.queryChanged.connect(self._recount)
        self.model.modelReset.connect(self._on_model_reset)
        self.gallery.labelShortcut.connect(self.label_with_shortcut)
        self.gallery.unlabelRequested.connect(lambda: self.label_selection(None))
        self.gallery.customContextMenuRequested.connect(self._tile_menu)
        self.gallery.activatedImage.connect(lambda _row: self.viewer.setFocus())
        self.gallery.selectionModel().currentChanged.connect(self._on_current_changed)
        self.gallery.selectionModel().selectionChanged.connect(self._update_counts)

        self.viewer.navigate.connect(self._viewer_navigate)
        self.viewer.labelShortcut.connect(self.label_with_shortcut)
        self.viewer.unlabelRequested.connect(lambda: self.label_selection(None))

        self.class_panel.labelSelectionRequested.connect(self.label_selection)
        self.class_panel.showClassRequested.connect(self._show_class)
        self.split_panel.showSplitRequested.connect(self._show_split)
        self.split_panel.showImagesRequested.connect(self.show_images)

        self.train_panel.reviewRequested.connect(self.review_run)
        self.train_panel.runFinished.connect(self._on_run_finished)
        self.review_panel.exportRequested.connect(self.show_export_dialog)
        self.train_panel.progress.valueChanged.connect(self._mirror_training)
        self.train_panel.trainingStarted.connect(self._mirror_training)
        self.train_panel.trainingEnded.connect(lambda _id: self.training_indicator.hide())
        self.review_panel.openInViewer.connect(self.open_in_viewer)
        self.review_panel.runChanged.connect(self._update_heatmap_run)

    # ================================================================ projects
    @property
    def project(self) -> Project | None:
        return self.controller.project if self.controller else None

    def ask_new_project(self) -> None:
        start = self.prefs.last_project_dir or str(Path.home())
        path, _ = QFileDialog.getSaveFileName(
            self, "New project", str(Path(start) / f"Untitled{PROJECT_SUFFIX}"),
            f"DenseStudio projects (*{PROJECT_SUFFIX})")
        if path:
            self.new_project(Path(path))

    def ask_open_project(self) -> None:
        start = self.prefs.last_project_dir or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self, "Open project", start, f"DenseStudio projects (*{PROJECT_SUFFIX});;All files (*)")
        if path:
            self.open_project(path)

    def ask_open_shared_project(self) -> None:
        from densestudio.ui.shared_dialog import SharedProjectDialog

        dialog = SharedProjectDialog(app_settings.recent_projects(), self)
        if dialog.exec():
            target = dialog.target()
            if target is not None:
                self.open_project(target)

    def new_project(self, path: str | Path) -> bool:
        path = Path(path)
        if path.suffix != PROJECT_SUFFIX:
            path = path.with_name(path.name + PROJECT_SUFFIX)
        if not self._can_switch_project():
            return False
        try:
            project = Project.create(path)
        except DenseStudioError as exc:
            self.show_error("Cannot create the project", str(exc))
            return False
        self._set_project(project)
        self.statusBar().showMessage(
            "New project created. Import images with File › Import (Ctrl+I) or drop folders "
            "onto the window.", 8000)
        return True

    def open_project(self, path: str | Path | ServerURL) -> bool:
        """Open a project file, or a shared project (a postgresql:// URL)."""
        if not self._can_switch_project():
            return False
        try:
            project = Project.open(path)
        except DenseStudioError as exc:
            self.show_error("Cannot open the project", str(exc))
            if not isinstance(path, ServerURL) and "://" not in str(path) \
                    and not Path(path).is_file():
                app_settings.remove_recent_project(path)  # a server may be back later
                self.welcome.set_recent(app_settings.recent_projects(),
                                        app_settings.recent_project_info())
            return False
        self._set_project(project)
        return True

    def close_project(self) -> None:
        if self.controller is None or not self._can_switch_project():
            return
        self._teardown_project()
        self._show_welcome()
        self.statusBar().clearMessage()
        self.projectClosed.emit()

    def _can_switch_project(self) -> bool:
        if self.import_worker is not None and self.import_worker.running:
            self.show_error("An import is running",
                            "Cancel the import (or wait for it to finish) before switching "
                            "projects.")
            return False
        if (self.train_panel.running or self.review_panel.worker is not None
                or self.audit_panel.running):
            self.show_error("Training is running",
                            "Cancel the training run (it can be resumed later) or wait for it "
                            "to finish before switching projects.")
            return False
        return True

    def _set_project(self, project: Project) -> None:
        if self.controller is not None:
            self._teardown_project()
        controller = ProjectController(project, self)
        controller.error.connect(lambda msg: self.show_error("Cannot do that", msg))
        controller.notice.connect(lambda msg: self.statusBar().showMessage(msg, 15000))
        controller.connectionChanged.connect(self._show_connection)
        controller.reloadNeeded.connect(self._on_reload_needed)
        self.controller = controller
        self.undo_group.addStack(controller.undo_stack)
        self.undo_group.setActiveStack(controller.undo_stack)
        cache = _thumbnail_cache(project)
        self.loader.set_fetch(cache.get_or_make if cache is not None else None)
        self.filter_bar.reset()
        self.filter_bar.set_classes(controller.classes())
        self.model.set_controller(controller)  # the model updates its rows first
        controller.classesChanged.connect(self._on_classes_changed)
        controller.labelsChanged.connect(self._on_labels_changed)
        controller.countsChanged.connect(self._recount)
        controller.goldenChanged.connect(self.on_golden_changed)
        controller.runDeleted.connect(self._update_heatmap_run)
        self.class_panel.set_controller(controller)
        self.split_panel.set_controller(controller)
        self.train_panel.set_controller(controller)
        self.heatmaps.set_project(project)
        self.review_panel.set_controller(controller)
        self._update_heatmap_run()
        self.audit_panel.set_controller(controller)
        self.viewer.set_project(project)
        self.viewer.show_image(None)
        self.tabs.setCurrentIndex(0)
        self.stack.setCurrentWidget(self.tabs)
        self._set_docks_visible(True)
        for action in self.project_actions:
            action.setEnabled(True)
        self.setWindowTitle(f"{project.name} — DenseStudio")
        if not project.shared:
            self.setWindowFilePath(str(project.path))
            self.prefs.last_project_dir = str(project.path.parent)
        app_settings.add_recent_project(project.location)  # a URL without its password
        self._remember_project()
        self._show_connection(controller.connection_state())
        self._recount()
        if self.model.rowCount():
            self.gallery.go_to_row(0)
        self.gallery.setFocus()
        self.verify_records(quiet=True)  # editing behind the app's back shows on opening
        self.projectOpened.emit(project.target)

    def _remember_project(self) -> None:
        """Image count and time for the welcome view's list of recent projects."""
        from datetime import datetime, timezone

        if self.controller is not None:
            app_settings.remember_recent_project(
                self.controller.project.location, self.controller.counts().total,
                datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def _teardown_project(self) -> None:
        controller = self.controller
        if controller is None:
            return
        self._remember_project()  # the count as it is now
        self.jobs.cancel_all()  # none may outlive the project it reads
        self.controller = None
        self.loader.set_fetch(None)
        self.model.set_controller(None)
        self.class_panel.set_controller(None)
        self.split_panel.set_controller(None)
        self.train_panel.set_controller(None)
        self.review_panel.set_controller(None)
        self.heatmaps.set_project(None)  # stops its worker before the project closes
        self.viewer.set_heatmap_run(None)
        self.audit_panel.set_controller(None)
        if self.export_dialog is not None:
            self.export_dialog.close()
            self.export_dialog = None
        self.viewer.show_image(None)
        self.viewer.set_project(None)
        self.undo_group.removeStack(controller.undo_stack)
        controller.close()
        controller.deleteLater()

    def _show_welcome(self) -> None:
        self.welcome.set_recent(app_settings.recent_projects(),
                                    app_settings.recent_project_info())
        self.stack.setCurrentWidget(self.welcome)
        self._set_docks_visible(False)
        for action in self.project_actions:
            action.setEnabled(False)
        self.setWindowTitle("DenseStudio")
        self.setWindowFilePath("")
        self.status_count.setText("")
        self._show_connection(None)

    def _set_docks_visible(self, visible: bool) -> None:
        """Docks belong to an open project; the welcome view has the window to itself."""
        if not visible:
            self._docks_shown = {d: d.isVisible() or not hasattr(self, "_docks_shown")
                                 for d in (self.class_dock, self.split_dock)}
        for dock in (self.class_dock, self.split_dock):
            dock.toggleViewAction().setEnabled(visible)
            if visible:
                dock.setVisible(getattr(self, "_docks_shown", {}).get(dock, True))
            else:
                dock.hide()

    # ================================================================ gallery & labeling
    def apply_filter(self) -> None:
        if self.controller is None:
            return
        current = self._current_image_id()
        self.model.set_query(self.filter_bar.image_filter(), self.filter_bar.sort_key(),
                             self.filter_bar.descending())
        row = self.model.row_of(current) if current is not None else None
        if row is None and self.model.rowCount():
            row = 0
        if row is not None:
            self.gallery.go_to_row(row)
        else:
            self.viewer.show_image(None)

    def _show_class(self, class_id: int | None) -> None:
        self.filter_bar.set_class(class_id)

    def _show_split(self, split: str) -> None:
        self.filter_bar.set_split(split)

    def show_images(self, image_ids: list[int], title: str = "") -> None:
        """Show exactly these images in the Images tab (until the filter changes)."""
        if self.controller is None:
            return
        self.tabs.setCurrentIndex(0)
        self.model.set_ids(list(image_ids))
        self.gallery.go_to_row(0)
        self.statusBar().showMessage(
            f"Showing {title or f'{len(image_ids):,} images'}; change the filter to see all.",
            10000)

    def _on_model_reset(self) -> None:
        total = self.controller.counts().total if self.controller else 0
        if self.controller is None:
            self.gallery.empty_text = ""
        elif total == 0:
            self.gallery.empty_text = ("No images yet.\n\nDrop folders or files here, or use "
                                       "File › Import Images… (Ctrl+I).")
        else:
            self.gallery.empty_text = "No images match the filter."
        self.gallery.viewport().update()

    def _current_image_id(self) -> int | None:
        index = self.gallery.currentIndex()
        if not index.isValid() or index.row() >= self.model.rowCount():
            return None
        return self.model.image_id(index.row())

    def selected_image_ids(self) -> list[int]:
        ids = self.model.ids_in_selection(self.gallery.selectionModel().selection())
        if not ids:
            current = self._current_image_id()
            ids = [current] if current is not None else []
        return ids

    def label_with_shortcut(self, key: str) -> None:
        if self.controller is None:
            return
        cls = self.controller.class_for_shortcut(key)
        if cls is None:
            self.statusBar().showMessage(
                f"No class has the shortcut {key}. Add classes in the Classes panel.", 5000)
            return
        self.label_selection(cls.id)

    def label_selection(self, class_id: int | None) -> None:
        if self.controller is None:
            return
        ids = self.selected_image_ids()
        if not ids:
            self.statusBar().showMessage("Select images to label first.", 4000)
            return
        change = self.controller.label_images(ids, class_id)
        if change is None:
            return
        cls = self.controller.class_by_id(class_id)
        what = f"{len(ids):,} image{'s' if len(ids) != 1 else ''}"
        self.statusBar().showMessage(
            f"Labeled {what} as '{cls.name}'." if cls else f"Removed the label of {what}.", 4000)
        if len(ids) == 1 and class_id is not None and self.auto_advance_action.isChecked():
            self.go_to_next_unlabeled(quiet=True)

    def go_to_next_unlabeled(self, quiet: bool = False) -> bool:
        if self.controller is None:
            return False
        index = self.gallery.currentIndex()
        start = index.row() if index.isValid() else -1
        row = self._next_unlabeled_row(start)
        if row is None:
            if not quiet:
                self.statusBar().showMessage("No unlabeled image after this one.", 4000)
            return False
        self.gallery.go_to_row(row)
        return True

    def _next_unlabeled_row(self, start: int) -> int | None:
        # Look a little ahead in rows already in memory; then ask the store once.
        limit = min(self.model.rowCount(), start + 1 + 1000)
        for row in range(start + 1, limit):
            info = self.model.info(row)
            if info is not None and info.label_id is None:
                return row
        if limit >= self.model.rowCount():
            return None
        from dataclasses import replace

        flt = replace(self.model.filter, class_ids=None, unlabeled=True)
        if self.model.explicit:
            flt = replace(flt, image_ids=tuple(self.model.ids))
        assert self.controller is not None  # the model has rows
        best = None
        for image_id in self.controller.project.image_ids(flt, self.model.sort_by,
                                                          self.model.descending):
            found = self.model.row_of(image_id)
            if found is not None and found > start and (best is None or found < best):
                best = found
                if self.model.explicit is False:
                    break  # same order as the view: the first one after start is it
        return best

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            self.viewer.show_image(None)
            return
        info = self.model.info(current.row())
        self.viewer.show_image(info, self.model.class_of(info))

    def _on_labels_changed(self, image_ids: list[int]) -> None:
        info = self.viewer.info
        if info is not None and info.id in set(image_ids):
            row = self.model.row_of(info.id)
            fresh = self.model.info(row) if row is not None else None
            if fresh is None and self.controller is not None:
                fresh = self.controller.project.image(info.id)
            self.viewer.update_label(fresh, self.model.class_of(fresh))

    def _on_classes_changed(self) -> None:
        if self.controller is None:
            return
        self.filter_bar.set_classes(self.controller.classes())
        self._fill_label_menu()
        info = self.viewer.info
        if info is not None:
            row = self.model.row_of(info.id)
            fresh: ImageInfo | None = self.model.info(row) if row is not None else info
            self.viewer.update_label(fresh, self.model.class_of(fresh))

    def _viewer_navigate(self, delta: int) -> None:
        self.gallery.move_current(delta)

    def _show_connection(self, state: QueueState | None) -> None:
        """The status-bar indicator of a shared project: online, or "offline — N changes
        waiting" until they are written."""
        label = self.connection_status
        if state is None:
            label.hide()
            return
        offline = not state.online or state.waiting
        label.setText(state.message if offline else "shared · online")
        label.setToolTip(
            "The database server cannot be reached. Labels you set now are kept on this "
            "computer and saved when it is back." if offline else
            "Changes by others show up here within a second or two.")
        label.setStyleSheet("color: white; background: #b3261e; padding: 0 6px;"
                            if offline else "")
        label.show()

    def _recount(self) -> None:
        """After a query or label changes (not on every selection change: one count query)."""
        self._matching = self.model.matching_count() if self.controller is not None else 0
        self._update_counts()

    def _update_counts(self, *_args: object) -> None:
        if self.controller is None:
            return
        total = self.controller.counts().total
        shown = self.model.rowCount()
        self.filter_bar.set_count(shown, total, min(self._matching, shown))
        selection = self.gallery.selectionModel().selection()
        selected = sum(r.height() for r in selection)  # type: ignore[attr-defined]  # stubs lack __iter__
        sel = f" · {selected:,} selected" if selected > 1 else ""
        unlabeled = self.controller.counts().count(None)
        self.status_count.setText(f"{total:,} images · {unlabeled:,} unlabeled{sel}")

    def status(self, message: str, ms: int = 4000) -> None:
        self.statusBar().showMessage(message, ms)

    def exec_menu(self, menu: QMenu, global_pos: QPoint) -> None:
        """Show a context menu (a separate method so tests can look at it instead)."""
        menu.exec(global_pos)

    def _on_tile_size(self, size: int) -> None:
        self.prefs.tile_size = size
        self.gallery.set_tile_size(size)

    def _step_tiles(self, delta: int) -> None:
        if self.tabs.currentWidget() is self._tab_page(self.review_panel):
            self.review_panel.step_tile_size(delta)
            return
        self.filter_bar.tile_slider.setValue(self.filter_bar.tile_slider.value() + delta)

    def _mirror_training(self, *_args: object) -> None:
        """The Train tab's progress in the status bar, seen from every tab."""
        src, ind = self.train_panel.progress, self.training_indicator
        ind.setRange(src.minimum(), src.maximum())
        ind.setValue(src.value())
        ind.setFormat(f"Training: {src.format()}" if src.format() else "Training")
        ind.setVisible(self.train_panel.running)

    def show_tab(self, panel: QWidget) -> None:
        page = self._tab_page(panel)
        if page is not None:
            self.tabs.setCurrentWidget(page)

    def _tab_page(self, panel: QWidget) -> QWidget | None:
        """The tab page holding ``panel`` (itself, or the scroll area around it)."""
        for i in range(self.tabs.count()):
            page = self.tabs.widget(i)
            if page is not None and (page is panel or page.isAncestorOf(panel)):
                return page
        return None

    def open_in_viewer(self, image_ids: list[int], image_id: int) -> None:
        """A Review tile opened: the Images tab with those tiles, this one in the viewer."""
        self.show_images(image_ids, "the Review tab's images")
        row = self.model.row_of(image_id)
        if row is not None:
            self.gallery.go_to_row(row)
        self.viewer.setFocus()

    def _on_auto_advance(self, on: bool) -> None:
        self.prefs.auto_advance = on

    # ================================================================ train, review, export
    def review_run(self, run_id: int) -> None:
        self.review_panel.set_run(run_id)
        self.show_panel(self.review_panel)

    def _on_run_finished(self, run_id: int) -> None:
        if self.review_panel.run is None:
            self.review_panel.refresh_runs(select=run_id)
        else:  # keep what the user is looking at; the new run is in the list
            self.review_panel.refresh_runs(reload=False)
        self.statusBar().showMessage(
            f"Training run #{run_id} finished; see the Review tab.", 10000)
        self._update_heatmap_run()

    def _update_heatmap_run(self, *_args: object) -> None:
        """The viewer explains images with the run open in the Review tab, else with the
        newest finished run (no run: no heatmap bar)."""
        from densestudio.core import runs as core_runs
        from densestudio.ui.runs_panel import run_title

        run = None
        if self.controller is not None:
            current = self.review_panel.run
            if current is not None and current.checkpoint_best:
                run = current
            else:
                run = next((r for r in core_runs.list_runs(self.controller.project)
                            if r.status == "finished" and r.checkpoint_best), None)
        if run is None:
            self.viewer.set_heatmap_run(None)
        else:
            self.viewer.set_heatmap_run(run.id, run.class_names, run_title(run))

    def on_golden_changed(self, message: str) -> None:
        """Must-pass marks changed (from a gallery's context menu)."""
        self.statusBar().showMessage(message, 6000)
        self.viewer.refresh_history()

    def show_export_dialog(self, run_id: int | None = None) -> ExportDialog | None:
        """Export ``run_id``; without one, the approved run (else the newest finished)."""
        from densestudio.core import runs as core_runs
        from densestudio.core import signoff
        from densestudio.ui.export_dialog import ExportDialog

        if self.controller is None:
            return None
        if run_id is None:
            run_id = signoff.approved_run_id(self.controller.project)
        if run_id is None:
            run_id = next((r.id for r in core_runs.list_runs(self.controller.project)
                           if r.status == "finished" and r.checkpoint_best), None)
        if run_id is None:
            self.show_error("Nothing to export", "There is no finished training run yet: "
                            "train one in the Train tab.")
            return None
        if self.export_dialog is not None:
            self.export_dialog.close()
        dialog = ExportDialog(self, run_id, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda *_: setattr(self, "export_dialog", None)
                                 if self.export_dialog is dialog else None)
        self.export_dialog = dialog
        dialog.open()
        return dialog

    # ================================================================ misc UI
    def add_tab(self, widget: QWidget, title: str, scroll: bool = False) -> int:
        """For later panels (Train, Runs, Review). ``scroll``: the page scrolls when the
        window is smaller than the panel needs (instead of forcing a large window)."""
        if scroll:
            from PySide6.QtWidgets import QFrame, QScrollArea

            area = QScrollArea(self)
            area.setWidgetResizable(True)
            area.setFrameShape(QFrame.Shape.NoFrame)
            area.setWidget(widget)
            return self.tabs.addTab(area, title)
        return self.tabs.addTab(widget, title)

    def show_panel(self, widget: QWidget) -> None:
        """Bring the tab that holds ``widget`` to the front."""
        for i in range(self.tabs.count()):
            page = self.tabs.widget(i)
            if page is widget or (page is not None and page.isAncestorOf(widget)):
                self.tabs.setCurrentIndex(i)
                return

    def current_panel(self) -> QWidget | None:
        page = self.tabs.currentWidget()
        inner = getattr(page, "widget", None)
        return inner() if callable(inner) else page

    def toggle_full_screen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
        else:
            self.showFullScreen()
        self.fullscreen_action.setChecked(self.isFullScreen())

    def show_error(self, title: str, message: str) -> None:
        """Show a user-facing error without blocking (tests read ``last_error``)."""
        log.info("%s: %s", title, message)
        self.last_error = message
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok,
                          self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # ================================================================ workers & lifetime
    def _restore_geometry(self) -> None:
        s = app_settings.qsettings()
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 880)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        else:
            self.resizeDocks([self.class_dock], [360], Qt.Orientation.Horizontal)
        splitter = s.value("window/splitter")
        if isinstance(splitter, QByteArray) and not splitter.isEmpty():
            self.splitter.restoreState(splitter)
        else:
            self.splitter.setSizes([640, 420])

    def save_state(self) -> None:
        s = app_settings.qsettings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/splitter", self.splitter.saveState())
        app_settings.save_preferences(self.prefs)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.jobs.cancel_all()
        self.save_state()
        self._teardown_project()
        self.viewer.shutdown()
        self.loader.shutdown()
        event.accept()


def _scrolling(widget: QWidget) -> QWidget:
    from PySide6.QtWidgets import QFrame, QScrollArea

    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    return area


def _thumbnail_cache(project: Project) -> ThumbnailCache | None:
    try:
        from densestudio.core.thumbnails import ThumbnailCache
    except ImportError:  # pragma: no cover - thumbnails module missing
        return None
    return ThumbnailCache(project.cache_dir)
