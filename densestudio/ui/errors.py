"""Unexpected exceptions become an error dialog with details; the app keeps running.

PySide6 calls ``sys.excepthook`` for an exception raised in a slot and then carries on, so
one hook covers slots, event handlers and timers. Worker threads report failures through
their own signals; their handlers call ``show_error`` too. Everything already saved stays
saved: the project is written at every change, so there is nothing to "recover".
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType

from PySide6.QtCore import QCoreApplication, QObject, Signal, Slot
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from densestudio.core.errors import DenseStudioError

log = logging.getLogger(__name__)


def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> None:
    box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok,
                      parent)
    if details:
        box.setDetailedText(details)
    box.setInformativeText("Your labels and project are saved; you can keep working.")
    box.exec()


class _ErrorRelay(QObject):
    """Moves reports from any thread to the GUI thread before a dialog is shown."""

    raised = Signal(str, str)

    @Slot(str, str)
    def show(self, message: str, details: str) -> None:
        parent = QApplication.activeWindow()
        show_error(parent, "DenseStudio: unexpected error", message, details)


_relay: _ErrorRelay | None = None
dialogs_enabled = True  # tests switch dialogs off and inspect ``last_error``
last_error: tuple[str, str] | None = None


def _hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    global last_error
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    details = "".join(traceback.format_exception(kind, value, tb))
    message = str(value) if isinstance(value, DenseStudioError) else (
        f"{kind.__name__}: {value}")
    log.error("Unhandled exception\n%s", details)
    last_error = (message, details)
    if dialogs_enabled and _relay is not None:
        _relay.raised.emit(message, details)


def install_excepthook(app: QCoreApplication) -> None:
    """Call from the GUI thread: the relay lives there, so reports from worker threads
    arrive as queued signals and the dialog is always created on the GUI thread."""
    global _relay
    _relay = _ErrorRelay(app)
    _relay.raised.connect(_relay.show)
    sys.excepthook = _hook
