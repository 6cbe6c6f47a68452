"""Bases of the mixins that split a large widget into modules (the main window's flows and
menus, the Review tab's parts): typed as the widget they join, a plain class at run time,
so a mixin is checked against what it uses of its widget without inheriting from Qt twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMainWindow, QWidget

if TYPE_CHECKING:
    WindowMixin = QMainWindow
    PanelMixin = QWidget
else:
    WindowMixin = object
    PanelMixin = object

__all__ = ["PanelMixin", "WindowMixin"]
