"""Background work for the GUI: ``Worker`` runs a core/ml function in a thread, ``to_gui``
hands a worker thread's results to the GUI thread.

Threads are plain Python threads, and the code that runs in them never touches Qt objects
(no QObject, QImage, QPixmap, image plugins, not even a reference to one): a thread that held
the GIL inside a Qt call that takes a Qt lock could deadlock against the GUI thread, which
takes Qt locks and then waits for the GIL (e.g. while destroying a QObject whose wrapper needs
Python). The one Qt call a worker makes is emitting the signal of a process-lifetime relay
object that lives in the GUI thread; PySide releases the GIL while Qt queues it, and the
payload is plain Python data (frozen dataclasses, ids, bytes, numpy arrays). The relay holds
only weak references to its targets, so a worker never owns (and never destroys) a QObject;
a result for an object that is gone is dropped. Why not QThread/QThreadPool: a worker object
moved to a QThread, a QRunnable's wrapper or ``QThread.currentThread().quit()`` all put
Qt-object life cycles in the worker; here there are none, and waiting is a plain
``Thread.join``/``Condition.wait`` that releases the GIL.

``Worker``: the function (``fn(..., on_event=, cancel=)``) reports events; they come back as the
``event`` Signal, on the GUI thread. Frequent progress events are throttled to ~10 Hz (the
newest one wins, and the last one before the end is always delivered); every other event
(e.g. ``EpochEnded``) passes through at once, in order. The result arrives as
``finished(result)``; a ``DenseStudioError`` (user-caused) as ``failed(message)``; a cancel as
``cancelled()``; a bug as ``failed`` with the traceback logged. ``done`` is emitted last in
every case, after the thread has stopped. ``Worker[R]`` is typed by the function's result:
``worker.on_result(slot)`` checks that ``slot`` takes an ``R``.

``JobRunner``: the app's one place that starts workers (``AppContext.jobs``): one job per
owner at a time, one default failure path (an error dialog), cancel-and-wait when the
project closes or the app quits. Panels start their work with ``ctx.jobs.start(...)``.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal, Slot

from densestudio.core.errors import CancelledError, DenseStudioError
from densestudio.core.progress import CancelToken, Progress

log = logging.getLogger(__name__)

THROTTLE_S = 0.1
R = TypeVar("R")


# ------------------------------------------------------------------ worker -> GUI thread
class _Relay(QObject):
    """Runs posted calls on the GUI thread, in the order they were posted."""

    posted = Signal(object)  # (weak target, args)

    def __init__(self) -> None:
        super().__init__()
        self.posted.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @Slot(object)
    def _run(self, item: tuple[weakref.WeakMethod, tuple]) -> None:
        target, args = item
        method = target()
        if method is None or not _alive(method.__self__):
            return  # its object is gone
        method(*args)


_relay: _Relay | None = None


def _alive(obj: object) -> bool:
    return not isinstance(obj, QObject) or shiboken6.isValid(obj)


class GuiCall:
    """A callable any thread may call: ``slot(*args)`` then runs on the GUI thread.

    Holds ``slot`` (a bound method, usually of a QObject) weakly; plain data only in ``args``.
    """

    __slots__ = ("_relay", "_target")

    def __init__(self, slot: Callable[..., object]) -> None:
        global _relay
        if _relay is None:
            _relay = _Relay()
            app = QCoreApplication.instance()
            if app is not None and _relay.thread() is not app.thread():
                _relay.moveToThread(app.thread())
        self._relay = _relay
        self._target = weakref.WeakMethod(slot)

    def __call__(self, *args: object) -> None:
        self._relay.posted.emit((self._target, args))


def to_gui(slot: Callable[..., object]) -> GuiCall:
    """``slot`` as a thread-safe callable that runs it later on the GUI thread. Create it on
    the GUI thread; hand it (not the QObject) to the worker."""
    return GuiCall(slot)


# ------------------------------------------------------------------ Worker
def is_progress_event(event: object) -> bool:
    """Events that may be dropped when newer ones follow (``core.progress.Progress``)."""
    return isinstance(event, Progress)


class _Reporter:
    """The worker thread's side: throttles events and posts them, in order, to the GUI."""

    def __init__(self, post: GuiCall, throttle_s: float,
                 droppable: Callable[[object], bool]) -> None:
        self._post = post
        self._throttle_s = throttle_s
        self._droppable = droppable
        self._last_emit = 0.0
        self._pending: object | None = None
        self._lock = threading.Lock()

    def on_event(self, event: object) -> None:
        # May be called from helper threads the function starts; keep emission ordered.
        with self._lock:
            now = time.monotonic()
            if self._droppable(event):
                if now - self._last_emit >= self._throttle_s:
                    self._pending = None
                    self._last_emit = now
                    self._post("event", event)
                else:
                    self._pending = event
                return
            self._flush()
            self._post("event", event)

    def end(self, kind: str, value: object) -> None:
        with self._lock:
            self._flush()
            self._post(kind, value)

    def _flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._last_emit = time.monotonic()
            self._post("event", pending)


def _run(fn: Callable[..., Any], args: tuple, kwargs: dict, cancel: CancelToken,
         reporter: _Reporter) -> None:
    """The worker thread: call the function, report how it ended (no Qt objects here)."""
    try:
        value = fn(*args, on_event=reporter.on_event, cancel=cancel, **kwargs)
    except CancelledError:
        reporter.end("cancelled", None)
    except DenseStudioError as exc:
        reporter.end("user_error", str(exc))
    except Exception as exc:  # a bug: log the traceback, show a short message
        log.error("Worker %s failed:\n%s", getattr(fn, "__name__", fn), traceback.format_exc())
        reporter.end("error", f"{type(exc).__name__}: {exc}")
    else:
        reporter.end("finished", value)
    finally:
        reporter.end("ended", None)


class Worker(QObject, Generic[R]):
    """Handle the GUI keeps for one background job. Create, connect, then start it with
    ``JobRunner.start`` (or ``start()`` where no runner is at hand, as in tests)."""

    # The name is the API (``worker.event.connect`` everywhere); it shadows QObject.event()
    # for Python callers only, and nothing calls that on a Worker.
    event = Signal(object)  # type: ignore[assignment]
    finished = Signal(object)  # the function's return value
    failed = Signal(str)  # a message for the user
    cancelled = Signal()
    done = Signal()  # always last; the thread has stopped

    def __init__(
        self,
        fn: Callable[..., R],
        *args: object,  # handed on to ``fn`` untouched
        throttle_s: float = THROTTLE_S,
        droppable: Callable[[object], bool] = is_progress_event,
        parent: QObject | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(parent)
        self.token = CancelToken()
        self.user_error = False
        reporter = _Reporter(to_gui(self._on_report), throttle_s, droppable)
        self._thread = threading.Thread(
            target=_run, args=(fn, args, kwargs, self.token, reporter),
            name=f"worker:{getattr(fn, '__name__', 'job')}", daemon=True)
        self._running = False
        self._before_done: list[Callable[[], object]] = []  # the runner's bookkeeping

    def start(self) -> None:
        self._running = True
        self._thread.start()

    def on_result(self, slot: Callable[[R], object]) -> None:
        """Call ``slot(result)`` on the GUI thread when the function returns (typed
        ``finished.connect``)."""
        self.finished.connect(slot)

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def running(self) -> bool:
        return self._running

    def wait(self, ms: int = 30_000) -> bool:
        """Block until the thread ends (used when quitting). Its reports still queued are
        delivered by the event loop later."""
        if self._thread.ident is None:
            return True  # never started
        self._thread.join(ms / 1000)
        return not self._thread.is_alive()

    def _on_report(self, kind: str, value: object) -> None:
        if kind == "event":
            self.event.emit(value)
        elif kind == "finished":
            self.finished.emit(value)
        elif kind in ("user_error", "error"):
            self.user_error = kind == "user_error"
            self.failed.emit(value)
        elif kind == "cancelled":
            self.cancelled.emit()
        elif kind == "ended":
            self._thread.join()  # its last act was posting this: returns at once
            self._running = False
            for hook in self._before_done:  # the owner is free again when ``done`` comes
                hook()
            self.done.emit()


class JobRunner(QObject):
    """Starts and tracks every background job of the window (``AppContext.jobs``).

    ``owner`` (a panel, a dialog) has at most one job at a time: ``start`` refuses a second
    while the first runs, so a panel needs no busy flag of its own (``busy(owner)``).
    ``error_title``: the default failure path, an error dialog with that title and the
    message; None where the owner shows the failure itself (a label, its own dialog).
    """

    def __init__(self, show_error: Callable[[str, str], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._show_error = show_error
        self._running: list[Worker[Any]] = []
        self._owners: dict[int, Worker[Any]] = {}  # id(owner) -> its job

    def start(self, worker: Worker[R], owner: object | None = None,
              error_title: str | None = "Cannot do that") -> bool:
        """Start ``worker``; False (not started) when ``owner`` already has a job running."""
        if owner is not None and self.busy(owner):
            return False
        self._running.append(worker)
        key = None if owner is None else id(owner)
        if key is not None:
            self._owners[key] = worker
        if error_title is not None:
            worker.failed.connect(lambda message: self._show_error(error_title, message))
        worker._before_done.append(lambda: self._ended(worker, key))
        worker.start()
        return True

    def busy(self, owner: object) -> bool:
        return id(owner) in self._owners

    def job_of(self, owner: object) -> Worker[Any] | None:
        return self._owners.get(id(owner))

    @property
    def running(self) -> list[Worker[Any]]:
        return list(self._running)

    def cancel(self, owner: object) -> None:
        job = self.job_of(owner)
        if job is not None:
            job.cancel()

    def cancel_all(self, wait_ms: int = 30_000) -> bool:
        """Cancel every job and wait for their threads (a project closing, the app quitting):
        none may outlive what it reads. True when all stopped in time."""
        jobs = list(self._running)
        for job in jobs:
            job.cancel()
        return all([job.wait(wait_ms) for job in jobs])

    def _ended(self, worker: Worker[Any], key: int | None) -> None:
        if worker in self._running:
            self._running.remove(worker)
        if key is not None and self._owners.get(key) is worker:
            del self._owners[key]
