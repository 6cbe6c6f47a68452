"""Application start-up: QApplication, icon, light/dark palette following the OS, main window."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import cast

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette, QWheelEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QWidget,
)

from densestudio import __version__
from densestudio.ui import settings as app_settings


def dark_palette() -> QPalette:
    p = QPalette()
    window, base, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(225, 225, 228)
    disabled = QColor(130, 130, 135)
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        p.setColor(group, QPalette.ColorRole.Window, window)
        p.setColor(group, QPalette.ColorRole.WindowText, text)
        p.setColor(group, QPalette.ColorRole.Base, base)
        p.setColor(group, QPalette.ColorRole.AlternateBase, QColor(38, 38, 41))
        p.setColor(group, QPalette.ColorRole.ToolTipBase, QColor(60, 60, 64))
        p.setColor(group, QPalette.ColorRole.ToolTipText, text)
        p.setColor(group, QPalette.ColorRole.Text, text)
        p.setColor(group, QPalette.ColorRole.Button, QColor(55, 55, 59))
        p.setColor(group, QPalette.ColorRole.ButtonText, text)
        p.setColor(group, QPalette.ColorRole.BrightText, QColor(255, 90, 90))
        p.setColor(group, QPalette.ColorRole.Link, QColor(90, 170, 255))
        p.setColor(group, QPalette.ColorRole.Highlight, QColor(42, 130, 218))
        p.setColor(group, QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
        p.setColor(group, QPalette.ColorRole.PlaceholderText, QColor(150, 150, 155))
        p.setColor(group, QPalette.ColorRole.Mid, QColor(80, 80, 85))
        p.setColor(group, QPalette.ColorRole.Light, QColor(75, 75, 80))
        p.setColor(group, QPalette.ColorRole.Dark, QColor(25, 25, 27))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text,
                 QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Base, window)
    return p


def wants_dark() -> bool:
    forced = os.environ.get("DENSESTUDIO_THEME", "").lower()
    if forced in ("dark", "light"):
        return forced == "dark"
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


def apply_palette(app: QApplication) -> None:
    """Fusion style with a light or dark palette, whichever the OS currently uses.

    Only a real change re-applies style sheets: walking ``allWidgets()`` also meets widgets
    whose deletion is pending, and touching those can crash (seen once in 20 GUI-test runs,
    where every test's fresh window called this with an unchanged palette)."""
    palette = dark_palette() if wants_dark() else app.style().standardPalette()
    if palette == app.palette():
        return
    app.setPalette(palette)
    # Style sheets that use palette(...) colours resolve them when set: re-apply them.
    for widget in app.topLevelWidgets():
        _reapply_sheets(widget)


def _reapply_sheets(top: QWidget) -> None:
    for widget in [top, *top.findChildren(QWidget)]:
        sheet = widget.styleSheet()
        if "palette(" in sheet:
            widget.setStyleSheet("")
            widget.setStyleSheet(sheet)


class WheelGuard(QObject):
    """The mouse wheel never changes a setting the user is scrolling past: spin boxes and
    combo boxes (every one in the app) take the wheel only while they have the focus; an
    unfocused one hands it to the scroll area around it, which scrolls on. Installed once,
    on the application, so no widget can forget it."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Polish and isinstance(watched, (QAbstractSpinBox, QComboBox)):
            if watched.focusPolicy() == Qt.FocusPolicy.WheelFocus:
                watched.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # a wheel gives no focus
        elif kind == QEvent.Type.Wheel and isinstance(watched, (QAbstractSpinBox, QComboBox)) \
                and not watched.hasFocus():
            area = watched.parentWidget()
            while area is not None and not isinstance(area, QAbstractScrollArea):
                area = area.parentWidget()
            if area is not None:
                assert isinstance(event, QWheelEvent)
                QApplication.sendEvent(area.viewport(), event)
            return True
        return False


def install_wheel_guard(app: QApplication) -> None:
    """Install the WheelGuard once per application."""
    if getattr(app, "wheel_guard", None) is None:
        app.wheel_guard = WheelGuard(app)  # type: ignore[attr-defined]  # kept with the app
        app.installEventFilter(app.wheel_guard)  # type: ignore[attr-defined]


def create_application(argv: list[str] | None = None) -> QApplication:
    # The instance is a QApplication: this function (or pytest-qt) made it.
    app = cast("QApplication | None", QApplication.instance())
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv)
    app.setOrganizationName(app_settings.ORGANIZATION)
    app.setApplicationName(app_settings.APPLICATION)
    app.setApplicationDisplayName("DenseStudio")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("densestudio")  # matches packaging/densestudio.desktop (Wayland)
    app.setStyle("Fusion")
    from densestudio.ui.window_menus import app_icon

    app.setWindowIcon(app_icon())
    from densestudio.ml.threads import start_warm_up

    # torch's one-time lazy imports (>1 s, some holding the GIL for 100+ ms) happen now, in
    # the background while the window appears, instead of freezing the GUI mid-training.
    start_warm_up()
    from densestudio.ui.errors import install_excepthook

    install_excepthook(app)
    install_wheel_guard(app)
    apply_palette(app)
    app.styleHints().colorSchemeChanged.connect(lambda _scheme: apply_palette(app))
    return app


def run_app(argv: list[str] | None = None) -> int:
    """Open the main window (optionally with a project path) and run the event loop."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv if argv is None else argv)
    app = create_application(argv)
    from densestudio.ui.main_window import MainWindow

    window = MainWindow()
    window.show()
    project = project_from_argv(argv)
    if project is not None:
        window.open_project(project)
    return app.exec()


def project_from_argv(argv: list[str]) -> str | None:
    """The project to open at start: ``--project FILE_OR_URL`` (from ``densestudio open``),
    else the first existing ``.dsproj`` file named (a file manager's "Open with")."""
    if "--project" in argv[:-1]:
        return argv[argv.index("--project") + 1]
    return next((a for a in argv[1:] if a.endswith(".dsproj") and Path(a).is_file()), None)
