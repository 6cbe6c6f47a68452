"""Thumbnails decoded off the GUI thread, kept in a memory-bounded LRU of QPixmaps.

The gallery asks for the thumbnails of the tiles it paints. Requests go on a bounded
last-in-first-out queue, so while the user scrolls fast the tiles on screen now are served
first and requests for tiles long gone are dropped.

Threads: plain Python threads (a ``ThreadPoolExecutor``) fetch the JPEG bytes
(``ThumbnailCache.get_or_make``) and decode them with Pillow into ``Pixels`` (plain bytes),
which reach the GUI thread through ``workers.to_gui``; only the GUI thread builds QImages and
QPixmaps. The threads see ``_Requests`` (a plain object: the queue, its lock, the fetch
function), never the loader itself - see ``ui.workers`` for why no Qt object may live, die or
be called with the GIL held in a worker (``QImage.fromData`` in a worker, probing every image
plugin with the GIL held, once deadlocked the app).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QPixmap

from densestudio.core.store import ImageInfo
from densestudio.ui.pixels import Pixels, decode
from densestudio.ui.workers import GuiCall, to_gui

log = logging.getLogger(__name__)

Fetch = Callable[[ImageInfo], "bytes | None"]


def _no_fetch(_info: ImageInfo) -> bytes | None:
    return None


class _Requests:
    """What the worker threads share with the GUI thread; every field under ``lock``."""

    def __init__(self, max_queue: int) -> None:
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified when a drain ends
        self.queue: OrderedDict[int, ImageInfo] = OrderedDict()
        self.in_flight: set[int] = set()
        self.generation = 0
        self.drains = 0
        self.max_queue = max_queue
        self.fetch: Fetch = _no_fetch

    def pop(self) -> tuple[int, Fetch, ImageInfo] | None:
        """The newest request (with its generation and fetch), or None: this drain ends."""
        with self.lock:
            if not self.queue:
                self.drains -= 1
                self.idle.notify_all()
                return None
            image_id, info = self.queue.popitem(last=True)
            self.in_flight.add(image_id)
            return self.generation, self.fetch, info


def _drain(requests: _Requests, deliver: GuiCall) -> None:
    """A worker thread: decode requests (newest first) until the queue is empty."""
    while (item := requests.pop()) is not None:
        generation, fetch, info = item
        pixels = None
        try:
            data = fetch(info)
            if data:
                pixels = decode(data)
        except Exception:  # a bad cache entry must not kill the thread
            log.exception("Thumbnail for image %s failed", info.id)
        deliver(generation, info.id, pixels)


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
        self.max_bytes = max_bytes
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()
        self._bytes = 0
        self._failed: set[int] = set()
        self._requests = _Requests(max_queue)
        self._requests.fetch = fetch or _no_fetch
        self._threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="thumbnails")
        self._deliver = to_gui(self._on_decoded)

    # ------------------------------------------------------------ GUI thread API
    def set_fetch(self, fetch: Fetch | None) -> None:
        """Switch source (a project was opened/closed); forgets everything cached."""
        self.clear()
        with self._requests.lock:
            self._requests.fetch = fetch or _no_fetch

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
        r = self._requests
        with r.lock:
            if info.id in r.in_flight:
                return
            if info.id in r.queue:
                r.queue.move_to_end(info.id)
            else:
                r.queue[info.id] = info
                while len(r.queue) > r.max_queue:
                    r.queue.popitem(last=False)  # the oldest request: long scrolled away
            start = r.drains < self._threads
            if start:
                r.drains += 1
        if start:
            self._pool.submit(_drain, r, self._deliver)

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
        r = self._requests
        with r.lock:
            r.generation += 1
            r.queue.clear()
            r.in_flight.clear()
        self.forget()

    def shutdown(self, wait_ms: int = 5000) -> None:
        """Forget the queue and wait (GIL released) for the decodes in progress."""
        self.clear()
        r = self._requests
        with r.idle:
            r.idle.wait_for(lambda: r.drains == 0, wait_ms / 1000)

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    @property
    def pending(self) -> int:
        r = self._requests
        with r.lock:
            return len(r.queue) + len(r.in_flight)

    # ------------------------------------------------------------ GUI thread
    def _on_decoded(self, generation: int, image_id: int, pixels: Pixels | None) -> None:
        r = self._requests
        with r.lock:
            if generation != r.generation:
                return
            r.in_flight.discard(image_id)
        if pixels is None:
            self._failed.add(image_id)
        else:
            pixmap = QPixmap.fromImage(pixels.to_qimage())
            self._cache[image_id] = pixmap
            self._bytes += _pixmap_bytes(pixmap)
            while self._bytes > self.max_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._bytes -= _pixmap_bytes(old)
        self.ready.emit(image_id)


def _pixmap_bytes(pixmap: QPixmap) -> int:
    return max(1, pixmap.width() * pixmap.height() * max(1, pixmap.depth() // 8))
