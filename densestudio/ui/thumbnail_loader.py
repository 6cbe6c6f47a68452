"""Thumbnails decoded off the GUI thread, kept in a memory-bounded LRU of QPixmaps.

The gallery asks for the thumbnails of the tiles it paints. Requests go on a bounded
last-in-first-out queue, so while the user scrolls fast the tiles on screen now are served
first and requests for tiles long gone are dropped. Worker threads (a private QThreadPool)
fetch JPEG bytes (``ThumbnailCache.get_or_make``) and decode them into QImages; the GUI thread
only converts each finished QImage into a QPixmap and repaints its tile.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage, QPixmap

from densestudio.core.store import ImageInfo

log = logging.getLogger(__name__)

Fetch = Callable[[ImageInfo], "bytes | None"]


class _Bridge(QObject):
    decoded = Signal(int, int, QImage)  # generation, image id, image (null = failed)


class _Drain(QRunnable):
    """Pops requests (newest first) until the queue is empty."""

    def __init__(self, loader: ThumbnailLoader) -> None:
        super().__init__()
        self.loader = loader
        self.setAutoDelete(True)

    def run(self) -> None:
        loader = self.loader
        while True:
            item = loader._pop()
            if item is None:
                return
            generation, info = item
            image = QImage()
            try:
                data = loader._fetch(info)
                if data:
                    image = QImage.fromData(data)
            except Exception:  # a bad cache entry must not kill the thread
                log.exception("Thumbnail for image %s failed", info.id)
            loader._bridge.decoded.emit(generation, info.id, image)


class ThumbnailLoader(QObject):
    ready = Signal(int)  # image id whose thumbnail is now available (or known to be missing)

    def __init__(
        self,
        fetch: Fetch | None = None,
        max_bytes: int = 192 * 1024 * 1024,
        threads: int = 2,
        max_queue: int = 600,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._fetch: Fetch = fetch or (lambda _info: None)
        self.max_bytes = max_bytes
        self.max_queue = max_queue
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()
        self._bytes = 0
        self._failed: set[int] = set()
        self._lock = threading.Lock()
        self._queue: OrderedDict[int, ImageInfo] = OrderedDict()
        self._in_flight: set[int] = set()
        self._generation = 0
        self._drains = 0
        self._threads = threads
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._bridge = _Bridge()
        self._bridge.decoded.connect(self._on_decoded)

    # ------------------------------------------------------------ GUI thread API
    def set_fetch(self, fetch: Fetch | None) -> None:
        """Switch source (a project was opened/closed); forgets everything cached."""
        self.clear()
        self._fetch = fetch or (lambda _info: None)

    def pixmap(self, image_id: int) -> QPixmap | None:
        pixmap = self._cache.get(image_id)
        if pixmap is not None:
            self._cache.move_to_end(image_id)
        return pixmap

    def failed(self, image_id: int) -> bool:
        return image_id in self._failed

    def request(self, info: ImageInfo) -> None:
        if info.id in self._cache or info.id in self._failed:
            return
        with self._lock:
            if info.id in self._in_flight:
                return
            if info.id in self._queue:
                self._queue.move_to_end(info.id)
            else:
                self._queue[info.id] = info
                while len(self._queue) > self.max_queue:
                    self._queue.popitem(last=False)  # the oldest request: long scrolled away
            start = self._drains < self._threads
            if start:
                self._drains += 1
        if start:
            self._pool.start(_Drain(self))

    def forget(self, image_ids: list[int] | None = None) -> None:
        """Drop cached pixmaps (all, or these) so they are fetched again."""
        if image_ids is None:
            self._cache.clear()
            self._bytes = 0
            self._failed.clear()
            return
        for image_id in image_ids:
            pixmap = self._cache.pop(image_id, None)
            if pixmap is not None:
                self._bytes -= _pixmap_bytes(pixmap)
            self._failed.discard(image_id)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._queue.clear()
            self._in_flight.clear()
        self.forget()

    def shutdown(self, wait_ms: int = 5000) -> None:
        self.clear()
        self._pool.waitForDone(wait_ms)

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + len(self._in_flight)

    # ------------------------------------------------------------ worker side
    def _pop(self) -> tuple[int, ImageInfo] | None:
        with self._lock:
            if not self._queue:
                self._drains -= 1
                return None
            image_id, info = self._queue.popitem(last=True)
            self._in_flight.add(image_id)
            return self._generation, info

    # ------------------------------------------------------------ GUI thread
    @Slot(int, int, QImage)
    def _on_decoded(self, generation: int, image_id: int, image: QImage) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self._in_flight.discard(image_id)
        if image.isNull():
            self._failed.add(image_id)
        else:
            pixmap = QPixmap.fromImage(image)
            self._cache[image_id] = pixmap
            self._bytes += _pixmap_bytes(pixmap)
            while self._bytes > self.max_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._bytes -= _pixmap_bytes(old)
        self.ready.emit(image_id)


def _pixmap_bytes(pixmap: QPixmap) -> int:
    return max(1, pixmap.width() * pixmap.height() * max(1, pixmap.depth() // 8))
