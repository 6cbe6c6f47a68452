"""An exception in a slot shows an error dialog with details; the app keeps running."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton
from pytestqt.qtbot import QtBot

from densestudio.ui import errors


def test_exception_in_slot_is_reported_and_app_survives(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors.install_excepthook(QApplication.instance())
    shown = []
    monkeypatch.setattr(errors, "show_error", lambda parent, title, msg, details="": shown.append(
        (title, msg, details)))
    button = QPushButton("boom")
    qtbot.addWidget(button)

    def explode() -> None:
        raise ValueError("a bug in a slot")

    button.clicked.connect(explode)
    button.click()
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    _title, message, details = shown[0]
    assert "ValueError: a bug in a slot" in message
    assert "Traceback" in details and "explode" in details
    # the event loop still runs
    fired = []
    QTimer.singleShot(0, lambda: fired.append(True))
    qtbot.waitUntil(lambda: fired == [True], timeout=5000)
    sys.excepthook = sys.__excepthook__


def test_error_dialog_has_details(qtbot: QtBot) -> None:
    def close_box() -> None:
        box = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox)
                   and w.isVisible())
        assert box.detailedText() == "line 1\nline 2"
        assert "saved" in box.informativeText()
        box.accept()

    QTimer.singleShot(50, close_box)
    errors.show_error(None, "Title", "Message", "line 1\nline 2")
