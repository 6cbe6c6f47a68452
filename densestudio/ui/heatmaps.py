"""Heatmaps ("where is the model looking?") for the viewer and the review tiles.

``HeatmapService`` computes explanations (``ml.explain``) in a worker thread, never on the
GUI thread, and caches them per (run, image, class) - class ``None`` means "the predicted
class". Requests queue up; the viewer's are urgent (served first), the tiles' are served
newest first (the tiles the user looks at now). One worker at a time handles a small batch of
one run's requests, so a scroll through hundreds of tiles never floods the machine.
``colorize`` turns a heatmap into a translucent colour image to lay over a picture.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QImage, QPixmap

from densestudio.ui.gallery_model import GalleryModel
from densestudio.ui.jobs import HeatmapFailed, HeatmapReady, explain_job
from densestudio.ui.workers import JobRunner, Worker

if TYPE_CHECKING:  # torch loads in the worker, when the first heatmap is asked for
    from densestudio.core.store import Project
    from densestudio.ml.explain import Explanation
    from densestudio.ui.controller import ProjectController
    from densestudio.ui.thumbnail_loader import ThumbnailLoader

Key = tuple[int, int, "int | None"]  # run id, image id, class index (None = predicted)

# Blue -> cyan -> green -> yellow -> red (the familiar Grad-CAM look).
_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_RGB = np.array([[20, 40, 200], [0, 190, 230], [40, 210, 60], [250, 220, 0], [230, 20, 20]],
                dtype=np.float64)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), _STOPS, _RGB[:, c]) for c in range(3)],
                axis=1).astype(np.uint8)


def colorize(heatmap: np.ndarray) -> QImage:
    """RGBA image of a [0, 1] heatmap: warm = strong evidence; cold areas stay see-through."""
    h = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    idx = (h * 255).astype(np.uint8)
    rgba = np.empty((*h.shape, 4), dtype=np.uint8)
    rgba[..., :3] = _LUT[idx]
    rgba[..., 3] = (235 * h**0.7 + 20).astype(np.uint8)  # weak evidence: nearly clear
    rgba = np.ascontiguousarray(rgba)
    height, width = h.shape
    return QImage(rgba.data, width, height, 4 * width, QImage.Format.Format_RGBA8888).copy()


class HeatmapService(QObject):
    """Queue + cache + worker for explanations of one open project."""

    ready = Signal(object, object)  # key (run, image, class), ml.explain.Explanation
    failed = Signal(object, str)  # key, message
    busyChanged = Signal(bool)

    BATCH = 6
    CACHE_SIZE = 400

    def __init__(self, parent: QObject | None = None, jobs: JobRunner | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs or JobRunner(lambda _title, _message: None, self)
        self.project: Project | None = None
        self._cache: OrderedDict[Key, Explanation] = OrderedDict()
        self._errors: dict[Key, str] = {}
        self._queue: OrderedDict[Key, bool] = OrderedDict()  # key -> urgent
        self.worker: Worker | None = None
        self.computed = 0  # explanations made (tests, benchmarks)

    # ------------------------------------------------------------ API
    def set_project(self, project: Project | None) -> None:
        """A new (or no) project: forget everything and stop the worker."""
        self.shutdown()
        self.project = project
        self._cache.clear()
        self._errors.clear()

    def get(
        self, run_id: int, image_id: int, class_index: int | None = None
    ) -> Explanation | None:
        key = (run_id, image_id, class_index)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
        return hit

    def error(self, run_id: int, image_id: int, class_index: int | None = None) -> str | None:
        return self._errors.get((run_id, image_id, class_index))

    def request(self, run_id: int, image_id: int, class_index: int | None = None,
                urgent: bool = False) -> Explanation | None:
        """The cached explanation, or None after queueing its computation (``ready`` follows)."""
        key = (run_id, image_id, class_index)
        hit = self.get(*key)
        if hit is not None or key in self._errors or self.project is None:
            return hit
        if key in self._queue:
            urgent = urgent or self._queue.pop(key)
        self._queue[key] = urgent  # newest last
        self._pump()
        return None

    def drop_pending(self, keep_urgent: bool = True) -> None:
        """Forget queued, not yet started tile requests (e.g. when the tiles change)."""
        for key in [k for k, u in self._queue.items() if not (keep_urgent and u)]:
            del self._queue[key]

    @property
    def pending(self) -> int:
        return len(self._queue) + (1 if self.worker is not None else 0)

    def shutdown(self) -> None:
        self._queue.clear()
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.cancel()
            worker.wait(30_000)

    # ------------------------------------------------------------ internals
    def _next_batch(self) -> tuple[int, list[tuple[int, int | None]]]:
        urgent = [k for k, u in self._queue.items() if u]
        order = list(reversed(urgent)) + [k for k in reversed(self._queue) if not self._queue[k]]
        run_id = order[0][0]
        batch = [k for k in order if k[0] == run_id][: self.BATCH]
        for key in batch:
            del self._queue[key]
        return run_id, [(image_id, cls) for _, image_id, cls in batch]

    def _pump(self) -> None:
        if self.worker is not None or not self._queue or self.project is None:
            return
        run_id, requests = self._next_batch()
        worker = Worker(explain_job, self.project, run_id, requests, parent=self)
        worker.event.connect(lambda event, w=worker: self._on_event(w, event))
        worker.failed.connect(lambda msg, r=run_id, q=requests: self._on_failed(r, q, msg))
        worker.done.connect(lambda w=worker: self._on_done(w))
        self.worker = worker
        self.busyChanged.emit(True)
        self.jobs.start(worker, self, error_title=None)  # a failure is kept per image

    def _on_event(self, worker: Worker, event: object) -> None:
        if worker is not self.worker:
            return  # from a worker stopped by a project change
        if isinstance(event, HeatmapReady):
            key = (event.run_id, event.image_id, event.class_index)
            self._cache[key] = event.explanation
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
            self.computed += 1
            self.ready.emit(key, event.explanation)
        elif isinstance(event, HeatmapFailed):
            key = (event.run_id, event.image_id, event.class_index)
            self._errors[key] = event.message
            self.failed.emit(key, event.message)

    def _on_failed(self, run_id: int, requests: list, message: str) -> None:
        # The whole batch failed (e.g. the run has no model): remember it for each image.
        if self.project is None:
            return
        for image_id, cls in requests:
            key = (run_id, image_id, cls)
            if key not in self._cache:
                self._errors[key] = message
                self.failed.emit(key, message)

    def _on_done(self, worker: Worker) -> None:
        if self.worker is worker:
            self.worker = None
            self.busyChanged.emit(False)
        worker.deleteLater()
        self._pump()


class HeatmapGalleryModel(GalleryModel):
    """A gallery model whose tiles can carry heatmaps of one run (for the predicted class).

    Heatmaps are asked for lazily, when a tile is painted, and arrive one by one; a tile
    repaints when its heatmap is ready. ``set_heatmaps(service, None)`` turns them off.
    """

    TILE_CACHE = 2000

    def __init__(
        self,
        controller: ProjectController | None,
        loader: ThumbnailLoader,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(controller, loader, parent)
        self.heatmaps: HeatmapService | None = None
        self.heat_run: int | None = None
        self._tiles: OrderedDict[tuple[int, int], QPixmap] = OrderedDict()

    def set_heatmaps(self, service: HeatmapService | None, run_id: int | None) -> None:
        if service is not self.heatmaps:
            if self.heatmaps is not None:
                self.heatmaps.ready.disconnect(self._on_ready)
            if service is not None:
                service.ready.connect(self._on_ready)
            self.heatmaps = service
        if run_id != self.heat_run:
            self.heat_run = run_id
            if service is not None:
                service.drop_pending()
            self._emit_all_changed([self.HeatmapRole])

    def tile_heatmap(self, image_id: int) -> QPixmap | None:
        return None if self.heat_run is None else self._tiles.get((self.heat_run, image_id))

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if role != self.HeatmapRole:
            return super().data(index, role)
        if self.heat_run is None or self.heatmaps is None or not index.isValid():
            return None
        image_id = self.image_id(index.row())
        pixmap = self._tiles.get((self.heat_run, image_id))
        if pixmap is None:
            explanation = self.heatmaps.request(self.heat_run, image_id, None)
            if explanation is not None:
                pixmap = self._store(self.heat_run, image_id, explanation)
        return pixmap

    def _store(self, run_id: int, image_id: int, explanation: Explanation) -> QPixmap:
        pixmap = QPixmap.fromImage(colorize(explanation.heatmap))
        self._tiles[(run_id, image_id)] = pixmap
        while len(self._tiles) > self.TILE_CACHE:
            self._tiles.popitem(last=False)
        return pixmap

    def _on_ready(self, key: tuple, explanation: Explanation) -> None:
        run_id, image_id, class_index = key
        if run_id != self.heat_run or class_index is not None:
            return
        row = self.row_of(image_id)
        if row is None:
            return
        self._store(run_id, image_id, explanation)
        index = self.index(row)
        self.dataChanged.emit(index, index, [self.HeatmapRole])
