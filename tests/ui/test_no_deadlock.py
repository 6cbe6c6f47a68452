"""No GIL/Qt-lock hazards off the GUI thread (issue 12).

1. A stress round (``stress_thumbnails.py``, in its own process): thousands of thumbnail loads
   while animated widgets are created and destroyed on the GUI thread. Before the fix, a
   round deadlocked about one time in ten; the suite runs two rounds (a few seconds);
   ``DENSESTUDIO_STRESS_ROUNDS=50`` runs fifty by hand.
2. Every worker thread of a working window (import, thumbnails, viewer, counts) is profiled:
   the only Qt call any of them makes is emitting the GUI relay's signal, and the only code
   of densestudio/ui they run is the short list of worker-side functions (plain data only).
3. ``Worker`` delivers events, result and ``done`` in order, on the GUI thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import BuiltinFunctionType, FrameType, ModuleType
from typing import TYPE_CHECKING

import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from densestudio.core.importer import ImportOptions
from densestudio.core.progress import CancelToken, EventCallback
from tests.ml.conftest import write_images

if TYPE_CHECKING:
    from densestudio.ui.main_window import MainWindow

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = str(ROOT / "densestudio" / "ui")
HANG_S = 60  # a round takes ~3 s on a loaded 2-core machine


def run_round() -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HANG_S": str(HANG_S)}
    return subprocess.run([sys.executable, "-m", "tests.ui.stress_thumbnails"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=HANG_S + 60)


def test_thumbnail_loads_never_deadlock_against_dying_animations() -> None:
    rounds = int(os.environ.get("DENSESTUDIO_STRESS_ROUNDS", "2"))
    for i in range(rounds):
        done = run_round()
        assert "Timeout" not in done.stderr, f"round {i + 1} deadlocked:\n{done.stderr}"
        assert done.returncode == 0, done.stdout + done.stderr
        words = done.stdout.split()
        assert words[:2] == ["ok", "3000"] and int(words[2]) > 0 and words[-1] == "0"


_QT_NAMES = {name for module in (QtCore, QtGui, QtWidgets) for name in dir(module)
             if name.startswith("Q")}

# The functions of densestudio/ui that may run in a worker thread (they handle plain data),
# besides ui/jobs.py and the ``*_job`` functions Workers run.
WORKER_SIDE = {
    "workers._run", "workers._Reporter.on_event", "workers._Reporter.end",
    "workers._Reporter._flush", "workers.GuiCall.__call__", "workers.is_progress_event",
    "thumbnail_loader._drain", "thumbnail_loader._Requests.pop", "viewer._load",
    "controller._count", "controller._watch", "pixels.decode", "pixels.Pixels.from_pil",
}


def _worker_side(name: str) -> bool:
    return name in WORKER_SIDE or name.startswith("jobs.") or name.endswith("_job")


def _qt_call(fn: object) -> str | None:
    """``Class.method`` when ``fn`` is a builtin of PySide/shiboken, else None. (Calling a
    Qt class to construct an object is no "c_call" event; WORKER_SIDE covers that.)"""
    if not isinstance(fn, BuiltinFunctionType):
        return None
    owner = fn.__self__
    if owner is not None and not isinstance(owner, (type, ModuleType)):  # a bound method
        cls = type(owner)
        qt = (cls.__module__ or "").startswith(("PySide6", "shiboken6"))
        return f"{cls.__qualname__}.{fn.__name__}" if qt else None
    return fn.__qualname__ if fn.__qualname__.split(".")[0] in _QT_NAMES else None


def _function_name(frame: FrameType) -> str:
    """``module.Class.function`` of the code running in ``frame``."""
    code = frame.f_code
    qualname = getattr(code, "co_qualname", None)  # Python 3.11+
    if qualname is None:
        owner = frame.f_locals.get("self") if code.co_argcount else None
        qualname = f"{type(owner).__name__}.{code.co_name}" if owner is not None else code.co_name
    return f"{Path(code.co_filename).stem}.{qualname}"


def test_worker_threads_make_no_qt_calls(qtbot: QtBot, window: MainWindow, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from densestudio.ui.pixels import decode

    qt_calls: dict[str, int] = {}
    ui_code: set[str] = set()  # functions of densestudio/ui run by worker threads
    foreign: list[str] = []  # decodes in threads Python did not start (QThread, QThreadPool)
    lock = threading.Lock()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if threading.current_thread() is threading.main_thread():
            return
        if event == "call" and frame.f_code.co_filename.startswith(UI_DIR):
            with lock:
                ui_code.add(_function_name(frame))
        elif event == "c_call" and (name := _qt_call(arg)) is not None:
            with lock:
                qt_calls[name] = qt_calls.get(name, 0) + 1

    def spy(source: object) -> object:
        if isinstance(threading.current_thread(), threading._DummyThread):
            foreign.append(threading.current_thread().name)
        return decode(source)

    monkeypatch.setattr("densestudio.ui.thumbnail_loader.decode", spy)
    monkeypatch.setattr("densestudio.ui.viewer.decode", spy)
    write_images(tmp_path / "imgs", n_per_class=4)
    threading.setprofile(profile)  # every thread started from now on
    try:
        assert window.new_project(tmp_path / "p.dsproj")
        with qtbot.waitSignal(window.importFinished, timeout=60_000):  # a Worker thread
            window.start_import([tmp_path / "imgs"], ImportOptions(labels_from_subfolders=True))
        model = window.model
        qtbot.waitUntil(lambda: model.rowCount() == 12, timeout=30_000)
        qtbot.waitUntil(lambda: all(window.loader.pixmap(model.image_id(r)) is not None
                                    for r in range(4)), timeout=30_000)  # thumbnail threads
        with qtbot.waitSignal(window.viewer.imageShown, timeout=30_000):  # the viewer's thread
            window.gallery.go_to_row(1)
        with qtbot.waitSignal(window.controller.countsChanged, timeout=30_000):  # counting
            qtbot.keyClick(window.gallery, Qt.Key.Key_0)  # removes its label
    finally:
        threading.setprofile(None)
    assert not foreign
    assert {"workers._run", "thumbnail_loader._drain", "viewer._load",
            "controller._count"} <= ui_code
    assert all(_worker_side(name) for name in ui_code), [
        name for name in sorted(ui_code) if not _worker_side(name)]
    assert set(qt_calls) == {"SignalInstance.emit"}, qt_calls


@pytest.mark.parametrize("fail", [False, True])
def test_worker_reports_in_order_on_the_gui_thread(qtbot: QtBot, fail: bool) -> None:
    from densestudio.core.errors import DenseStudioError
    from densestudio.ui.workers import Worker

    seen: list[tuple[str, object, bool]] = []

    def job(n: int, *, on_event: EventCallback, cancel: CancelToken) -> int:
        for i in range(n):
            on_event(i)
        if fail:
            raise DenseStudioError("no")
        return n

    def note(kind: str) -> Callable[..., None]:
        return lambda *a: seen.append((kind, a[0] if a else None,
                                       threading.current_thread() is threading.main_thread()))

    worker = Worker(job, 50, droppable=lambda _e: False)
    for kind in ("event", "finished", "failed", "done"):
        getattr(worker, kind).connect(note(kind))
    with qtbot.waitSignal(worker.done, timeout=10_000):
        worker.start()
    assert all(on_gui for _k, _v, on_gui in seen)
    assert [v for k, v, _ in seen if k == "event"] == list(range(50))
    assert [k for k, _v, _ in seen][50:] == ["failed" if fail else "finished", "done"]
    assert worker.user_error == fail and not worker.running and worker.wait(0)
