"""Run a core/ml function (``fn(..., on_event=, cancel=)``) in a QThread.

The function's events come back as the ``event`` Signal, queued to the GUI thread. Frequent
progress events are throttled to ~10 Hz (the newest one wins, and the last one before the end
is always delivered); every other event (e.g. ``EpochEnded``) passes through at once, in order.
The result arrives as ``finished(result)``; a ``DenseStudioError`` (user-caused) as
``failed(message)``; a cancel as ``cancelled()``; a bug as ``failed`` with the traceback logged.
``done`` is emitted last in every case, after the thread has stopped.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from densestudio.core.errors import CancelledError, DenseStudioError
from densestudio.core.progress import CancelToken

log = logging.getLogger(__name__)

THROTTLE_S = 0.1


def is_progress_event(event: object) -> bool:
    """Events that may be dropped when newer ones follow (class name ends with "Progress")."""
    return type(event).__name__.endswith("Progress")


class _Runner(QObject):
    """Lives in the worker thread; calls the function and reports through signals."""

    event = Signal(object)
    result = Signal(object)
    error = Signal(str, bool)  # message, is_user_error
    was_cancelled = Signal()

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        cancel: CancelToken,
        throttle_s: float,
        droppable: Callable[[object], bool],
    ) -> None:
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._cancel = cancel
        self._throttle_s = throttle_s
        self._droppable = droppable
        self._last_emit = 0.0
        self._pending: object | None = None
        self._lock = threading.Lock()

    def _on_event(self, event: object) -> None:
        # May be called from helper threads the function starts; keep emission ordered.
        with self._lock:
            now = time.monotonic()
            if self._droppable(event):
                if now - self._last_emit >= self._throttle_s:
                    self._pending = None
                    self._last_emit = now
                    self.event.emit(event)
                else:
                    self._pending = event
                return
            self._flush()
            self.event.emit(event)

    def _flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._last_emit = time.monotonic()
            self.event.emit(pending)

    @Slot()
    def run(self) -> None:
        try:
            value = self._fn(*self._args, on_event=self._on_event, cancel=self._cancel,
                             **self._kwargs)
        except CancelledError:
            with self._lock:
                self._flush()
            self.was_cancelled.emit()
        except DenseStudioError as exc:
            with self._lock:
                self._flush()
            self.error.emit(str(exc), True)
        except Exception as exc:  # a bug: log the traceback, show a short message
            log.error("Worker %s failed:\n%s", getattr(self._fn, "__name__", self._fn),
                      traceback.format_exc())
            self.error.emit(f"{type(exc).__name__}: {exc}", False)
        else:
            with self._lock:
                self._flush()
            self.result.emit(value)
        finally:
            QThread.currentThread().quit()


class Worker(QObject):
    """Handle the GUI keeps for one background job. Create, connect, then ``start()``."""

    event = Signal(object)
    finished = Signal(object)  # the function's return value
    failed = Signal(str)  # a message for the user
    cancelled = Signal()
    done = Signal()  # always last; the thread has stopped

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        throttle_s: float = THROTTLE_S,
        droppable: Callable[[object], bool] = is_progress_event,
        parent: QObject | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(parent)
        self.token = CancelToken()
        self.user_error = False
        self._thread = QThread()
        self._thread.setObjectName(f"worker:{getattr(fn, '__name__', 'job')}")
        self._runner = _Runner(fn, args, kwargs, self.token, throttle_s, droppable)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        self._runner.event.connect(self.event)
        self._runner.result.connect(self.finished)
        self._runner.error.connect(self._on_error)
        self._runner.was_cancelled.connect(self.cancelled)
        self._thread.finished.connect(self._on_thread_finished)
        self._running = False

    def start(self) -> None:
        self._running = True
        self._thread.start()

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def running(self) -> bool:
        return self._running

    def wait(self, ms: int = 30_000) -> bool:
        """Block until the thread ends (used when quitting). Signals still queued are
        delivered by the event loop later."""
        return self._thread.wait(ms)

    @Slot(str, bool)
    def _on_error(self, message: str, user_error: bool) -> None:
        self.user_error = user_error
        self.failed.emit(message)

    @Slot()
    def _on_thread_finished(self) -> None:
        self._running = False
        self._runner.deleteLater()
        self.done.emit()
