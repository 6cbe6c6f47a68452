"""QUndoCommands over the project store: every labeling and class operation can be undone.

Undo and redo of labels follow the store's conflict rule: an image someone else changed
since is left as it is, and the controller says so.

The controller performs an operation first (so a ``DenseStudioError`` reaches the user before
anything is pushed), then pushes a command built from the store's result; the command's first
``redo()`` (called by ``QUndoStack.push``) is therefore a no-op. Every undo/redo writes to the
project at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from PySide6.QtGui import QUndoCommand

from densestudio.core import history
from densestudio.core.store import ClassInfo, LabelChange, Project, RemovedClasses


class Controller(Protocol):
    """The public API of ``ui.controller.ProjectController`` that the commands use (a
    protocol: the controller imports this module)."""

    project: Project

    def guard(self, fn: Callable[[], object]) -> object: ...
    def changed_labels(self, change: LabelChange) -> None: ...
    def classes_changed(self, image_ids: Sequence[int] = ()) -> None: ...


class DoneCommand(QUndoCommand):
    """An operation already performed when pushed: the first ``redo()`` (``QUndoStack.push``)
    does nothing; later ones call ``redo``, and ``undo()`` calls ``undo``."""

    def __init__(self, text: str, redo: Callable[[], None], undo: Callable[[], None]) -> None:
        super().__init__(text)
        self._redo, self._undo = redo, undo
        self._first = True

    def redo(self) -> None:
        if self._first:
            self._first = False
            return
        self._redo()

    def undo(self) -> None:
        self._undo()


class _DoneCommand(QUndoCommand):
    def __init__(self, controller: Controller, text: str) -> None:
        super().__init__(text)
        self.c = controller
        self._first = True

    def redo(self) -> None:
        if self._first:
            self._first = False
            return
        self.c.guard(self._redo)

    def undo(self) -> None:
        self.c.guard(self._undo)

    def _redo(self) -> None:
        raise NotImplementedError

    def _undo(self) -> None:
        raise NotImplementedError


class LabelCommand(_DoneCommand):
    def __init__(self, controller: Controller, change: LabelChange, text: str) -> None:
        super().__init__(controller, text)
        self.change = change

    def _redo(self) -> None:
        self.c.changed_labels(self.c.project.redo_labels(self.change))

    def _undo(self) -> None:
        self.c.changed_labels(self.c.project.undo_labels(self.change))


class AddClassCommand(_DoneCommand):
    def __init__(self, controller: Controller, info: ClassInfo) -> None:
        super().__init__(controller, f"Add class '{info.name}'")
        self.info = info
        self.removed: RemovedClasses | None = None

    def _redo(self) -> None:
        if self.removed is not None:
            self.c.project.restore_classes(self.removed, how=history.HOW_REDO)
        self.c.classes_changed()

    def _undo(self) -> None:
        self.removed = self.c.project.delete_class(self.info.id, how=history.HOW_UNDO)
        self.c.classes_changed(self.removed.change.image_ids)


class RemoveClassesCommand(_DoneCommand):
    """Delete or merge: both give a ``RemovedClasses`` the store can restore."""

    def __init__(self, controller: Controller, removed: RemovedClasses, text: str) -> None:
        super().__init__(controller, text)
        self.removed = removed

    def _redo(self) -> None:
        self.c.changed_labels(self.c.project.redo_remove_classes(self.removed))
        self.c.classes_changed(self.removed.change.image_ids)

    def _undo(self) -> None:
        self.c.changed_labels(self.c.project.restore_classes(self.removed))
        self.c.classes_changed(self.removed.change.image_ids)


class RenameClassCommand(_DoneCommand):
    def __init__(self, controller: Controller, class_id: int, old: str, new: str) -> None:
        super().__init__(controller, f"Rename class '{old}' to '{new}'")
        self.class_id, self.old, self.new = class_id, old, new

    def _redo(self) -> None:
        self.c.project.rename_class(self.class_id, self.new)
        self.c.classes_changed()

    def _undo(self) -> None:
        self.c.project.rename_class(self.class_id, self.old)
        self.c.classes_changed()


class RecolorClassCommand(_DoneCommand):
    def __init__(
        self, controller: Controller, info: ClassInfo, old: str, new: str
    ) -> None:
        super().__init__(controller, f"Change colour of '{info.name}'")
        self.class_id, self.old, self.new = info.id, old, new

    def _redo(self) -> None:
        self.c.project.recolor_class(self.class_id, self.new)
        self.c.classes_changed()

    def _undo(self) -> None:
        self.c.project.recolor_class(self.class_id, self.old)
        self.c.classes_changed()


class ReorderClassesCommand(_DoneCommand):
    def __init__(
        self, controller: Controller, old: list[int], new: list[int]
    ) -> None:
        super().__init__(controller, "Reorder classes")
        self.old, self.new = old, new

    def _redo(self) -> None:
        self.c.project.reorder_classes(self.new)
        self.c.classes_changed()

    def _undo(self) -> None:
        self.c.project.reorder_classes(self.old)
        self.c.classes_changed()
