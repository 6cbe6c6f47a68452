"""The viewer for the current image: fit / 1:1 zoom, wheel zoom, drag to pan, next/previous.

Full images are decoded off the GUI thread, in one plain Python thread, with Pillow
(``pixels.decode``: 16-bit images come windowed to their 0.5-99.5 percentile range, so dim
sensor data is visible) into plain bytes; the GUI thread makes the QImage and QPixmap (see
``ui.workers``: no Qt objects in worker threads). A request the user has already moved past
is skipped, not decoded. File path, dimensions, size, mode and label are shown under the image.

Under the details, a collapsible *History* panel lists the image's label changes (who,
when, how, old -> new class; ``core.history.image_history``), refreshed whenever its label
changes (including undo / redo), and says when the image is marked must-pass.

Once a trained run is chosen (``set_heatmap_run``), a heatmap bar appears: "Heatmap" lays the
model's heatmap (where it finds evidence for the predicted class, or for a class picked in
the chooser) over the image with an opacity slider. Heatmaps come from a
``heatmaps.HeatmapService`` (computed in a worker, cached per run, image and class).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPixmap,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import history, signoff
from densestudio.core.constants import CHANGED_TEXT, SOURCE_CHANGED
from densestudio.core.formatting import html_text
from densestudio.core.imaging import ImageDecodeError
from densestudio.core.store import ClassInfo, ImageInfo
from densestudio.ui.pixels import Pixels, decode
from densestudio.ui.workers import GuiCall, to_gui

if TYPE_CHECKING:
    from densestudio.core.store import Project
    from densestudio.ml.explain import Explanation
    from densestudio.ui.heatmaps import HeatmapService


def history_time(utc: datetime) -> str:
    """Label events are stored in naive UTC; show local time."""
    if utc.tzinfo is None:
        utc = utc.replace(tzinfo=timezone.utc)
    return utc.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def history_change(event: history.LabelEventInfo) -> str:
    """"(unlabeled) → scratch", or "scratch (confirmed)" for a change that kept the label."""
    old = event.old_class or "(unlabeled)"
    new = event.new_class or "(unlabeled)"
    if old == new:
        return f"{new} (confirmed)" if event.how == history.HOW_AUDIT_CONFIRM else new
    return f"{old} → {new}"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            # A no-break space: "22.3 KB" never wraps into "22.3 / KB".
            return f"{size:.0f}\u00a0{unit}" if unit == "bytes" else f"{size:.1f}\u00a0{unit}"
        size /= 1024
    return f"{n} bytes"


class _Latest:
    """The newest load request (the worker skips the ones the user has moved past)."""

    def __init__(self) -> None:
        self.request = 0


def _load(latest: _Latest, request: int, info: ImageInfo, deliver: GuiCall) -> None:
    """The worker thread: decode one image into plain Pixels (no Qt objects here)."""
    if request != latest.request:
        return
    pixels, error = None, ""
    try:
        pixels = decode(Path(info.path))
    except ImageDecodeError as exc:
        error = str(exc)
    except Exception as exc:  # show, don't crash
        error = f"{type(exc).__name__}: {exc}"
    deliver(request, info.id, pixels, error)


MIN_ZOOM, MAX_ZOOM = 0.02, 40.0
MIN_FIT_SIDE = 24  # screen pixels: "Fit" never draws an image thinner than this


class ImageCanvas(QGraphicsView):
    zoomChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self._item = QGraphicsPixmapItem()
        self._item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self._item)
        # Heatmap overlay: a child of the image item, stretched over it.
        self._overlay = QGraphicsPixmapItem(self._item)
        self._overlay.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._overlay.setVisible(False)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setBackgroundBrush(QColor(40, 40, 40))
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        self.fit_mode = True
        self.message = ""
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys go to the viewer (labeling)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        parent = self.parentWidget()
        if parent is not None:
            parent.setFocus()
        super().mousePressEvent(event)

    def set_pixmap(self, pixmap: QPixmap | None, message: str = "") -> None:
        self.message = message
        self.set_overlay(None)
        self._item.setPixmap(pixmap if pixmap is not None else QPixmap())
        rect = QRectF(self._item.pixmap().rect())
        self.scene().setSceneRect(rect)
        if self.fit_mode:
            self.fit()
        else:
            self.set_zoom(self.zoom)
        self.viewport().update()

    def set_overlay(self, image: QImage | None, opacity: float | None = None) -> None:
        """Lay ``image`` (any size; stretched to the picture) over the picture, or remove it."""
        if image is None or image.isNull() or not self.has_image():
            self._overlay.setPixmap(QPixmap())
            self._overlay.setVisible(False)
            return
        pixmap = QPixmap.fromImage(image)
        size = self._item.pixmap().size()
        self._overlay.setPixmap(pixmap)
        self._overlay.setTransform(QTransform.fromScale(size.width() / pixmap.width(),
                                                        size.height() / pixmap.height()))
        if opacity is not None:
            self._overlay.setOpacity(opacity)
        self._overlay.setVisible(True)

    def set_overlay_opacity(self, opacity: float) -> None:
        self._overlay.setOpacity(opacity)

    def has_overlay(self) -> bool:
        return self._overlay.isVisible() and not self._overlay.pixmap().isNull()

    @property
    def overlay_opacity(self) -> float:
        return self._overlay.opacity()

    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def has_image(self) -> bool:
        return not self._item.pixmap().isNull()

    def fit(self) -> None:
        """The whole image in the view - except that its short side is never drawn thinner
        than ``MIN_FIT_SIDE`` screen pixels: a 20000 x 3 strip would be an invisible line,
        so it is shown from its start and scrolls (drag) along its length."""
        self.fit_mode = True
        if self.has_image():
            self.fitInView(self._item, Qt.AspectRatioMode.KeepAspectRatio)
            rect = self._item.pixmap().rect()
            short = min(rect.width(), rect.height())
            if short * self.zoom < MIN_FIT_SIDE:
                zoom = min(MAX_ZOOM, MIN_FIT_SIDE / short)
                self.resetTransform()
                self.scale(zoom, zoom)
                for bar in (self.horizontalScrollBar(), self.verticalScrollBar()):
                    bar.setValue(bar.minimum())  # the image's start at the view's start
        self.zoomChanged.emit(self.zoom)

    def set_zoom(self, zoom: float) -> None:
        self.fit_mode = False
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        self.resetTransform()
        self.scale(zoom, zoom)
        self.zoomChanged.emit(self.zoom)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if not self.has_image():
            return
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.fit_mode = False
            factor = 1.25**steps
            self.scale(factor, factor)
            self.zoomChanged.emit(self.zoom)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.fit_mode:
            self.fit()

    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:
        if self.message:
            painter.save()
            painter.resetTransform()
            painter.setPen(QColor(220, 220, 220))
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter
                             | Qt.TextFlag.TextWordWrap, self.message)
            painter.restore()


class ImageViewer(QWidget):
    """Shows one image with navigation; keys 1-9 / 0 are forwarded for labeling."""

    navigate = Signal(int)  # -1 previous, +1 next
    labelShortcut = Signal(str)
    unlabelRequested = Signal()
    imageShown = Signal(int)  # image id, once its pixels are on screen
    heatmapShown = Signal(int)  # image id, once its heatmap is laid over it

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.info: ImageInfo | None = None
        self._latest = _Latest()
        self._cls: ClassInfo | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="viewer")
        self._loading: Future | None = None
        self._deliver = to_gui(self._on_loaded)
        self._shown_id: int | None = None  # the image whose pixels are on screen
        self.heatmaps: HeatmapService | None = None
        self.heat_run: int | None = None
        self.project: Project | None = None  # for the label history panel
        self.history: list[history.LabelEventInfo] = []

        self.zoom_label = QLabel("", self)
        self.zoom_label.setMinimumWidth(48)
        self.canvas = ImageCanvas(self)
        self.canvas.zoomChanged.connect(self._on_zoom)
        self.canvas.set_pixmap(None, "No image selected.\nClick a tile in the gallery.")

        def tool(text: str, tip: str, slot: Callable[[], object]) -> QToolButton:
            b = QToolButton(self)
            b.setText(text)
            b.setToolTip(tip)
            b.setAutoRaise(True)
            b.clicked.connect(slot)
            return b

        self.prev_button = tool("◀", "Previous image (Left / Shift+Space)",
                                lambda: self.navigate.emit(-1))
        self.next_button = tool("▶", "Next image (Right / Space)", lambda: self.navigate.emit(1))
        self.fit_button = tool("Fit", "Fit the image in the view (F)", self.canvas.fit)
        self.one_button = tool("1:1", "Actual pixels (Ctrl+0)", lambda: self.canvas.set_zoom(1.0))
        self.title = QLabel("", self)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        for w in (self.prev_button, self.next_button, self.title):
            bar.addWidget(w)
        bar.setStretch(2, 1)
        for w in (self.fit_button, self.one_button, self.zoom_label):
            bar.addWidget(w)

        self.details = QLabel("", self)
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setContentsMargins(6, 2, 6, 4)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(self._build_heat_bar())
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.details)
        layout.addWidget(self._build_history())
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._update_details()

    def _build_history(self) -> QWidget:
        box = QWidget(self)
        self.history_button = QToolButton(box)
        self.history_button.setText("History")
        self.history_button.setCheckable(True)
        self.history_button.setAutoRaise(True)
        self.history_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.history_button.setArrowType(Qt.ArrowType.RightArrow)
        self.history_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.history_button.setToolTip("Every label change of this image: who, when, how "
                                       "(kept append-only in the project)")
        self.history_summary = QLabel("", box)
        self.history_summary.setTextFormat(Qt.TextFormat.RichText)
        self.history_summary.setSizePolicy(QSizePolicy.Policy.Ignored,
                                           QSizePolicy.Policy.Preferred)
        self.history_list = QTreeWidget(box)
        self.history_list.setHeaderLabels(["When", "Who", "How", "Change"])
        self.history_list.setRootIsDecorated(False)
        self.history_list.setUniformRowHeights(True)
        self.history_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.history_list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.history_list.setMaximumHeight(150)
        self.history_list.setVisible(False)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.history_button)
        row.addWidget(self.history_summary, 1)
        layout = QVBoxLayout(box)
        layout.setContentsMargins(4, 0, 4, 4)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.history_list)
        self.history_button.toggled.connect(self.set_history_expanded)
        return box

    # ------------------------------------------------------------ label history
    def set_project(self, project: Project | None) -> None:
        """The project whose label history the History panel reads."""
        self.project = project
        self.refresh_history()

    def set_history_expanded(self, expanded: bool) -> None:
        if self.history_button.isChecked() != expanded:
            self.history_button.setChecked(expanded)  # comes back here through toggled
            return
        self.history_button.setArrowType(Qt.ArrowType.DownArrow if expanded
                                         else Qt.ArrowType.RightArrow)
        self.history_list.setVisible(expanded)

    def refresh_history(self) -> None:
        """Re-read the shown image's label history (after it was shown or relabeled)."""
        info = self.info
        if self.project is None or info is None:
            self.history = []
            self.history_list.clear()
            self.history_summary.setText("")
            self.history_button.setEnabled(False)
            return
        self.history = history.image_history(self.project, info.id)
        self.history_button.setEnabled(True)
        self.history_list.clear()
        for e in reversed(self.history):  # newest first
            item = QTreeWidgetItem([history_time(e.at), e.who, e.how.replace("-", " "),
                                    history_change(e)])
            item.setToolTip(3, f"image content {e.image_hash[:16]}…")
            self.history_list.addTopLevelItem(item)
        for col in range(3):
            self.history_list.resizeColumnToContents(col)
        golden = (" · <b style='color:#b26a00'>★ must-pass</b>"
                  if info.id in signoff.golden_ids(self.project) else "")
        n = len(self.history)
        if not n:
            text = "<span style='color:gray'>no label changes recorded</span>"
        else:
            last = self.history[-1]
            text = (f"{n} change{'s' if n != 1 else ''} · last: {html_text(history_change(last))} "
                    f"by {html_text(last.who)}, {history_time(last.at)}")
        self.history_summary.setText(f"<small>{text}{golden}</small>")

    def _build_heat_bar(self) -> QWidget:
        self.heat_bar = QWidget(self)
        self.heat_button = QToolButton(self.heat_bar)
        self.heat_button.setText("Heatmap")
        self.heat_button.setCheckable(True)
        self.heat_button.setToolTip(
            "Show where the model finds evidence for a class (H). Warm colours: strong "
            "evidence. Computed in the background with the run's model (Layer-CAM, a "
            "Grad-CAM variant).")
        self.heat_class = QComboBox(self.heat_bar)
        self.heat_class.setToolTip("Explain the predicted class or any other class")
        self.heat_class.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.heat_opacity = QSlider(Qt.Orientation.Horizontal, self.heat_bar)
        self.heat_opacity.setRange(0, 100)
        self.heat_opacity.setValue(60)
        self.heat_opacity.setMaximumWidth(120)
        self.heat_opacity.setToolTip("Heatmap opacity")
        self.heat_status = QLabel("", self.heat_bar)
        self.heat_status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        for w in (self.heat_button, self.heat_class, self.heat_opacity):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the viewer (labeling)
        row = QHBoxLayout(self.heat_bar)
        row.setContentsMargins(4, 0, 4, 2)
        row.addWidget(self.heat_button)
        row.addWidget(self.heat_class)
        row.addWidget(QLabel("Opacity", self.heat_bar))
        row.addWidget(self.heat_opacity)
        row.addWidget(self.heat_status, 1)
        self.heat_button.toggled.connect(self._on_heat_toggled)
        self.heat_class.currentIndexChanged.connect(lambda _i: self._refresh_heatmap())
        self.heat_opacity.valueChanged.connect(
            lambda v: self.canvas.set_overlay_opacity(v / 100.0))
        self.heat_bar.hide()
        self._on_heat_toggled(False)
        return self.heat_bar

    # ------------------------------------------------------------ heatmaps
    def set_heatmap_service(self, service: HeatmapService) -> None:
        if self.heatmaps is not None:
            self.heatmaps.ready.disconnect(self._on_heat_ready)
            self.heatmaps.failed.disconnect(self._on_heat_failed)
        self.heatmaps = service
        if service is not None:
            service.ready.connect(self._on_heat_ready)
            service.failed.connect(self._on_heat_failed)

    def set_heatmap_run(self, run_id: int | None, class_names: tuple[str, ...] = (),
                        title: str = "") -> None:
        """The run whose model explains images (None hides the heatmap bar)."""
        keep = self.heat_class.currentText() if self.heat_class.currentIndex() > 0 else None
        self.heat_run = run_id
        self.heat_class.blockSignals(True)
        self.heat_class.clear()
        self.heat_class.addItem("Predicted class", None)
        for i, name in enumerate(class_names):
            self.heat_class.addItem(name, i)
        index = self.heat_class.findText(keep) if keep else 0
        self.heat_class.setCurrentIndex(max(0, index))
        self.heat_class.blockSignals(False)
        self.heat_bar.setVisible(run_id is not None)
        self.heat_bar.setToolTip(f"Heatmaps from {title}" if title else "")
        if run_id is None:
            self.heat_button.setChecked(False)
        self._refresh_heatmap()

    def heatmap_key(self) -> tuple[int, int, int | None] | None:
        if (self.heat_run is None or self.info is None or self.heatmaps is None
                or not self.heat_button.isChecked()):
            return None
        return (self.heat_run, self.info.id, self.heat_class.currentData())

    def _on_heat_toggled(self, on: bool) -> None:
        self.heat_class.setEnabled(on)
        self.heat_opacity.setEnabled(on)
        self._refresh_heatmap()

    def _refresh_heatmap(self) -> None:
        """Show the cached heatmap of the current image, or ask for it."""
        key = self.heatmap_key()
        if key is None:
            self.canvas.set_overlay(None)
            self.heat_status.setText("")
            return
        assert self.heatmaps is not None  # there is a key
        explanation = self.heatmaps.request(*key, urgent=True)
        if explanation is not None:
            self._apply_heatmap(key, explanation)
            return
        self.canvas.set_overlay(None)
        error = self.heatmaps.error(*key)
        self._heat_text(error or "Computing the heatmap…", bool(error))

    def _apply_heatmap(self, key: tuple, explanation: Explanation) -> None:
        from densestudio.ui.heatmaps import colorize

        if self._shown_id != key[1] or not self.canvas.has_image():
            return  # its pixels are not on screen yet; _on_loaded comes back here
        self.canvas.set_overlay(colorize(explanation.heatmap), self.heat_opacity.value() / 100)
        p = float(explanation.probs[explanation.class_index])
        predicted = explanation.class_names[explanation.predicted_index]
        what = ("predicted" if key[2] is None else
                f"predicted: {predicted}")
        self._heat_text(f"Evidence for <b>{html_text(explanation.class_name)}</b> ({what}, "
                        f"p = {p:.2f})")
        self.heatmapShown.emit(key[1])

    def _heat_text(self, text: str, error: bool = False) -> None:
        self.heat_status.setText(f"<span style='color:#c62828'>{html_text(text)}</span>" if error
                                 else f"<small>{text}</small>")

    def _on_heat_ready(self, key: tuple, explanation: Explanation) -> None:
        if key == self.heatmap_key():
            self._apply_heatmap(key, explanation)

    def _on_heat_failed(self, key: tuple, message: str) -> None:
        if key == self.heatmap_key():
            self.canvas.set_overlay(None)
            self._heat_text(message, True)

    # ------------------------------------------------------------ API
    def show_image(self, info: ImageInfo | None, cls: ClassInfo | None = None) -> None:
        same = info is not None and self.info is not None and info.id == self.info.id
        self.info, self._cls = info, cls
        self._update_details()
        self.refresh_history()
        if (same and info is not None and self.info is not None and info.path == self.info.path
                and self.canvas.has_image()):
            return  # only the label changed
        self._latest.request += 1
        if info is None:
            self.canvas.set_pixmap(None, "No image selected.\nClick a tile in the gallery.")
            return
        self.canvas.message = ""
        self._loading = self._pool.submit(_load, self._latest, self._latest.request, info,
                                          self._deliver)
        key = self.heatmap_key()
        if key is not None and self.heatmaps is not None:  # start while the image decodes
            self.heatmaps.request(*key, urgent=True)

    def update_label(self, info: ImageInfo | None, cls: ClassInfo | None) -> None:
        if info is not None and self.info is not None and info.id == self.info.id:
            self.info, self._cls = info, cls
            self._update_details()
            self.refresh_history()

    def shutdown(self) -> None:
        self._latest.request += 1
        if self._loading is not None:
            wait([self._loading], timeout=5)  # the GIL is released while waiting

    # ------------------------------------------------------------ internals
    def _on_loaded(self, request: int, image_id: int, pixels: Pixels | None, error: str) -> None:
        if request != self._latest.request:
            return  # the user moved on
        if pixels is None:
            self.canvas.set_pixmap(None, f"Cannot show this image:\n{error}")
        else:
            self.canvas.set_pixmap(QPixmap.fromImage(pixels.to_qimage()))
        self._shown_id = image_id
        self.imageShown.emit(image_id)
        self._refresh_heatmap()

    def _on_zoom(self, zoom: float) -> None:
        self.zoom_label.setText(f"{zoom * 100:.0f} %" if self.canvas.has_image() else "")

    def _update_details(self) -> None:
        info = self.info
        if info is None:
            self.title.setText("")
            self.details.setText("<i>No image selected.</i>")
            return
        self.title.setText(f"<b>{html_text(info.name)}</b>")
        self.title.setToolTip(info.path)
        cls = self._cls
        if cls is not None:
            label = (f"<span style='background:{cls.color}; color:#fff'>&nbsp;{html_text(cls.name)}"
                     f"&nbsp;</span>")
            if info.label_source == SOURCE_CHANGED:
                label += f" <b style='color:#c62828'>{CHANGED_TEXT}</b>"
            elif info.label_source and info.label_source != "human":
                label += f" <span style='color:gray'>(from {info.label_source})</span>"
        else:
            label = "<i>unlabeled</i>"
        depth = f"{info.bit_depth}-bit {info.mode}"
        if info.bit_depth > 8:
            depth += " (shown windowed to its 0.5–99.5 % range)"
        missing = " <b style='color:#c62828'>file missing</b>" if info.missing else ""
        split = info.split or "no split"
        self.details.setText(
            f"{label} &nbsp;·&nbsp; {split} &nbsp;·&nbsp; "
            f"{info.width}×{info.height}&nbsp;px, {depth}"
            f" &nbsp;·&nbsp; {human_size(info.byte_size)}{missing}<br>"
            f"<span style='color:gray'>{html_text(info.path)}</span>"
        )

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, mods = event.key(), event.modifiers()
        plain = mods in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier)
        if plain and Qt.Key.Key_1 <= key <= Qt.Key.Key_9:
            self.labelShortcut.emit(str(key - Qt.Key.Key_0))
        elif plain and key in (Qt.Key.Key_0, Qt.Key.Key_Backspace, Qt.Key.Key_Delete):
            self.unlabelRequested.emit()
        elif key in (Qt.Key.Key_Right, Qt.Key.Key_Down, Qt.Key.Key_PageDown) or (
            key == Qt.Key.Key_Space and not mods & Qt.KeyboardModifier.ShiftModifier
        ):
            self.navigate.emit(1)
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Up, Qt.Key.Key_PageUp, Qt.Key.Key_Space):
            self.navigate.emit(-1)
        elif key == Qt.Key.Key_F:
            self.canvas.fit()
        elif key == Qt.Key.Key_H and self.heat_bar.isVisible():
            self.heat_button.toggle()
        elif key == Qt.Key.Key_0 and mods & Qt.KeyboardModifier.ControlModifier:
            self.canvas.set_zoom(1.0)
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.canvas.set_zoom(self.canvas.zoom * 1.25)
        elif key == Qt.Key.Key_Minus:
            self.canvas.set_zoom(self.canvas.zoom / 1.25)
        else:
            super().keyPressEvent(event)


