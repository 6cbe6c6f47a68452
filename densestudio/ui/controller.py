"""The open project as the GUI sees it: store calls, the undo stack and change signals.

Widgets call these methods instead of the store, so every labeling and class operation is
written to the project at once and lands on one QUndoStack. User errors (``DenseStudioError``)
are reported through ``error`` (the window shows them); nothing half-done is pushed.
Counts are recounted in a plain Python thread that hands back only the table (``workers``).

Others' changes (another labeler on a shared project, another process on a file) arrive
from a change-feed thread (``core.changes``) within about a second and refresh the rows,
counts and classes they touch. Labels are written with this window's view of the images
(``store.Seen``), so a change to an image someone else changed meanwhile is refused for that
image and said so (``notice``). On a shared project, labeling while the server cannot be
reached is queued (``core.offline``) and written when it is back (``connectionChanged``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, overload

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoStack

from densestudio.core import changes, history
from densestudio.core.errors import DenseStudioError, ServerUnreachable
from densestudio.core.offline import FlushResult, LabelQueue, QueueState
from densestudio.core.store import (
    ClassInfo,
    CountTable,
    LabelChange,
    LabelConflict,
    Project,
    Seen,
    conflicts_message,
    lock_test_split,
    set_split_group_by,
    split_settings,
)
from densestudio.ui import undo
from densestudio.ui.workers import GuiCall, to_gui

if TYPE_CHECKING:
    from densestudio.core.near_duplicates import NearDuplicateGroup
    from densestudio.core.splits import SplitSettings

log = logging.getLogger("densestudio")

_T = TypeVar("_T")


class ProjectController(QObject):
    labelsChanged = Signal(object)  # list[int] of image ids whose label (or split) changed
    classesChanged = Signal()
    countsChanged = Signal()  # debounced: after a burst of changes
    splitsChanged = Signal()  # every image's split may have changed: reload
    reloadNeeded = Signal()  # others added images or re-split: reload the whole view
    error = Signal(str)
    notice = Signal(str)  # for the status line: e.g. a change refused for a conflict
    connectionChanged = Signal(object)  # offline.QueueState of a shared project
    goldenChanged = Signal(str)  # must-pass marks changed; a message for the status line
    approvalsChanged = Signal()  # a run was approved for release
    runDeleted = Signal(int)  # run id

    COUNTS_DEBOUNCE_MS = 150

    def __init__(self, project: Project, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.undo_stack = QUndoStack(self)
        self._classes: list[ClassInfo] = project.classes()
        self._counts: CountTable | None = None
        self._counts_generation = 0
        self._counting = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="counts")
        self._counting_done: Future | None = None
        self._counts_ready = to_gui(self._on_counts_ready)
        self._counts_timer = QTimer(self)
        self._counts_timer.setSingleShot(True)
        self._counts_timer.setInterval(self.COUNTS_DEBOUNCE_MS)
        self._counts_timer.timeout.connect(self._count_in_background)
        self._author_counts: dict[int, dict[str, int]] = {}
        # What this window has seen: the change number its view is current with, and the
        # label version of images it knows more recently (its own changes, the feed's).
        self.queue = LabelQueue(project) if project.shared else None
        self._feed = changes.ChangeFeed(project)
        self._seen_seq = self._feed.seq
        self._versions: dict[int, int] = {}
        self._closed = False
        self._stop_watching = threading.Event()
        self._watcher = threading.Thread(
            target=_watch, name="change-feed", daemon=True,
            args=(self._feed, self.queue, self._stop_watching, to_gui(self._on_batch),
                  to_gui(self._on_connection), to_gui(self._on_flushed)))
        self._watcher.start()

    # ------------------------------------------------------------ state
    @property
    def path(self) -> Path:
        return self.project.path

    def author_counts(self) -> dict[int, dict[str, int]]:
        """Labeled images per class and author (refreshed with the counts)."""
        return self._author_counts

    def connection_state(self) -> QueueState | None:
        """A shared project's connection: online, or offline with changes waiting."""
        return self.queue.state() if self.queue is not None else None

    def classes(self) -> list[ClassInfo]:
        return list(self._classes)

    def class_by_id(self, class_id: int | None) -> ClassInfo | None:
        for c in self._classes:
            if c.id == class_id:
                return c
        return None

    def class_for_shortcut(self, key: str) -> ClassInfo | None:
        for c in self._classes:
            if c.shortcut == key:
                return c
        return None

    def counts(self, fresh: bool = False) -> CountTable:
        """Image counts by class and split.

        Counting is a full scan (~80 ms at 100k images), so after a change the table is
        refreshed in the background and ``countsChanged`` says when; until then this returns
        the previous table. ``fresh=True`` counts now, on the calling thread.
        """
        if fresh or self._counts is None:
            self._counts_generation += 1
            self._counts = self.project.counts()
            self._author_counts = self.project.counts_by_author()
        return self._counts

    def split_settings(self) -> SplitSettings:
        return split_settings(self.project)

    def reload(self) -> None:
        """Re-read classes and counts (after an import or another process's changes); the
        caller reloads the view too, so it is current with the project's latest change."""
        self._seen_seq = max(self._seen_seq, changes.current_seq(self.project))
        self._versions.clear()
        self._classes = self.project.classes()
        self.counts(fresh=True)
        self.classesChanged.emit()
        self.countsChanged.emit()

    def close(self) -> None:
        self._closed = True
        self._stop_watching.set()
        self._feed.close()
        self._watcher.join(10)
        self._counts_timer.stop()
        self._counts_generation += 1
        if self._counting_done is not None:
            wait([self._counting_done], timeout=30)  # the GIL is released while waiting
        self.undo_stack.clear()
        self.project.close()

    # ------------------------------------------------------------ labels
    def label_images(self, image_ids: Sequence[int], class_id: int | None,
                     how: str | None = None) -> LabelChange | None:
        """``how`` for the label history; default: "keyboard" for one image, else "bulk"."""
        ids = list(image_ids)
        if not ids:
            return None
        how = how or (history.HOW_KEYBOARD if len(ids) == 1 else history.HOW_BULK)
        seen = self.seen(ids)
        try:
            if self.queue is not None:
                change = self.queue.set_labels(ids, class_id, expected=seen, how=how)
            else:
                change = self.project.set_labels(ids, class_id, how=how, expected=seen)
        except DenseStudioError as exc:
            self.error.emit(str(exc))
            return None
        if change is None:  # queued: the server cannot be reached
            assert self.queue is not None  # only a shared project queues
            self.connectionChanged.emit(self.queue.state())
            return None
        if len(change):
            label = self.class_by_id(class_id) if class_id is not None else None
            name = label.name if label is not None else None
            what = f"{len(change)} image{'s' if len(change) != 1 else ''}"
            text = f"Label {what} as '{name}'" if name else f"Remove label of {what}"
            self.undo_stack.push(undo.LabelCommand(self, change, text))
        self.changed_labels(change)
        return change

    def label_images_many(
        self, assignments: Sequence[tuple[int, int | None]], source: str | None = None,
        text: str | None = None, how: str | None = None,
    ) -> LabelChange | None:
        """Give each image its own label in one undoable step (e.g. accepted predictions,
        recorded with ``source`` = constants.SOURCE_PREDICTION; the history's ``how`` follows
        from it unless given)."""
        pairs = list(assignments)
        if not pairs:
            return None
        seen = self.seen([i for i, _ in pairs])
        if source is None:
            change = self.guard(
                lambda: self.project.set_labels_many(pairs, how=how, expected=seen))
        else:
            change = self.guard(lambda: self.project.set_labels_many(
                pairs, source=source, how=how, expected=seen))
        if change is None:
            return None
        if len(change):
            n = len(change)
            self.undo_stack.push(undo.LabelCommand(
                self, change, text or f"Label {n} image{'s' if n != 1 else ''}"))
        self.changed_labels(change)
        return change

    def seen(self, image_ids: Sequence[int]) -> Seen:
        """This window's view of these images, for the conflict rule."""
        known = self._versions
        return Seen({i: known[i] for i in image_ids if i in known}, self._seen_seq)

    def changed_labels(self, change: LabelChange) -> None:
        """After a label change of ours (or an undo): remember the new versions, tell of
        the images it was refused for, and refresh them all."""
        self._versions.update(change.versions)
        self.report_conflicts(change.conflicts)
        ids = change.image_ids + [c.image_id for c in change.conflicts]
        if ids:
            self._labels_changed(ids)

    def report_conflicts(self, conflicts: Sequence[LabelConflict]) -> None:
        if conflicts:
            self.notice.emit(conflicts_message(conflicts, {c.id: c.name for c in self._classes}))

    # ------------------------------------------------------------ classes
    def add_class(self, name: str, color: str | None = None,
                  on_error: Callable[[str], None] | None = None) -> ClassInfo | None:
        info = self.guard(lambda: self.project.add_class(name, color), on_error)
        if info is not None:
            self.undo_stack.push(undo.AddClassCommand(self, info))
            self.classes_changed()
        return info

    def rename_class(self, class_id: int, name: str,
                     on_error: Callable[[str], None] | None = None) -> bool:
        old = self.class_by_id(class_id)
        if old is None or old.name == name.strip():
            return False
        info = self.guard(lambda: self.project.rename_class(class_id, name), on_error)
        if info is None:
            return False
        self.undo_stack.push(undo.RenameClassCommand(self, class_id, old.name, info.name))
        self.classes_changed()
        return True

    def recolor_class(self, class_id: int, color: str) -> bool:
        old = self.class_by_id(class_id)
        if old is None or old.color.lower() == color.lower():
            return False
        info = self.guard(lambda: self.project.recolor_class(class_id, color))
        if info is None:
            return False
        self.undo_stack.push(undo.RecolorClassCommand(self, info, old.color, color))
        self.classes_changed()
        return True

    def reorder_classes(self, class_ids: Sequence[int]) -> bool:
        old = [c.id for c in self._classes]
        new = list(class_ids)
        if old == new:
            return False
        if self.guard(lambda: self.project.reorder_classes(new)) is None:
            return False
        self.undo_stack.push(undo.ReorderClassesCommand(self, old, new))
        self.classes_changed()
        return True

    def move_class(self, class_id: int, delta: int) -> bool:
        ids = [c.id for c in self._classes]
        if class_id not in ids:
            return False
        i = ids.index(class_id)
        j = max(0, min(len(ids) - 1, i + delta))
        if i == j:
            return False
        ids.insert(j, ids.pop(i))
        return self.reorder_classes(ids)

    def delete_class(self, class_id: int) -> bool:
        info = self.class_by_id(class_id)
        removed = self.guard(lambda: self.project.delete_class(class_id))
        if removed is None or info is None:
            return False
        self.undo_stack.push(
            undo.RemoveClassesCommand(self, removed, f"Delete class '{info.name}'")
        )
        self.classes_changed(removed.change.image_ids)
        return True

    def merge_classes(self, source_ids: Sequence[int], target_id: int) -> bool:
        target = self.class_by_id(target_id)
        names = [c.name for c in self._classes if c.id in source_ids]
        removed = self.guard(lambda: self.project.merge_classes(list(source_ids), target_id))
        if removed is None or target is None:
            return False
        text = f"Merge {', '.join(repr(n) for n in names)} into '{target.name}'"
        self.undo_stack.push(undo.RemoveClassesCommand(self, removed, text))
        self.classes_changed(removed.change.image_ids)
        return True

    # ------------------------------------------------------------ splits
    def resplit(self, ratios: tuple[float, float, float] | None = None) -> int | None:
        """Re-assign splits; near-identical and same-name images stay together."""
        from densestudio.core.near_duplicates import resplit

        n = self.guard(lambda: resplit(self.project, ratios))
        if n is not None:
            self.counts(fresh=True)
            self.splitsChanged.emit()
            self.countsChanged.emit()
        return n

    def lock_test_split(self, locked: bool) -> bool:
        ok = self.guard(lambda: lock_test_split(self.project, locked)) is not None
        self.splitsChanged.emit()
        return ok

    def set_group_by(self, group_by: str) -> int | None:
        """Keep groups ("folder" / "regex:PATTERN" / "" = none) in one split and re-split."""
        n = self.guard(lambda: set_split_group_by(self.project, group_by))
        if n is not None:
            self._splits_moved()
        return n

    def move_near_duplicates_together(self, groups: Sequence[NearDuplicateGroup]) -> int | None:
        """Put each group of near-identical images (core.near_duplicates) in one split."""
        from densestudio.core.near_duplicates import move_together

        n = self.guard(lambda: move_together(self.project, list(groups)))
        if n is not None:
            self._splits_moved()
        return n

    def _splits_moved(self) -> None:
        self.counts(fresh=True)
        self.splitsChanged.emit()
        self.countsChanged.emit()

    def golden_changed(self, message: str) -> None:
        """Must-pass marks were changed (from any gallery's context menu)."""
        self.goldenChanged.emit(message)

    def approvals_changed(self) -> None:
        """A run was approved (the run lists show which)."""
        self.approvalsChanged.emit()

    def run_deleted(self, run_id: int) -> None:
        """A run was deleted (with its predictions and models)."""
        self.runDeleted.emit(run_id)

    # ------------------------------------------------------------ for undo commands
    @overload
    def guard(
        self, fn: Callable[[], None], on_error: Callable[[str], None] | None = None
    ) -> Literal[True] | None: ...

    @overload
    def guard(
        self, fn: Callable[[], _T], on_error: Callable[[str], None] | None = None
    ) -> _T | None: ...

    def guard(
        self, fn: Callable[[], object], on_error: Callable[[str], None] | None = None
    ) -> object:
        """Run a store call; a user error becomes the ``error`` signal, or goes to
        ``on_error`` (a dialog showing it), and None is returned."""
        try:
            result = fn()
        except DenseStudioError as exc:
            (on_error or self.error.emit)(str(exc))
            return None
        return True if result is None else result

    def classes_changed(self, image_ids: Sequence[int] = ()) -> None:
        """The class list changed (and the labels of ``image_ids`` with it)."""
        self._classes = self.project.classes()
        self.classesChanged.emit()
        if image_ids:
            self._labels_changed(image_ids)
        else:
            self._schedule_counts()

    # ------------------------------------------------------------ internals
    def _labels_changed(self, image_ids: Sequence[int]) -> None:
        self.labelsChanged.emit(list(image_ids))
        self._schedule_counts()

    def _schedule_counts(self) -> None:
        self._counts_generation += 1  # results of a count started before now are stale
        self._counts_timer.start()

    def _count_in_background(self) -> None:
        if self._counting:
            self._counts_timer.start()  # one at a time; try again shortly
            return
        self._counting = True
        self._counting_done = self._pool.submit(
            _count, self.project, self._counts_generation, self._counts_ready)

    def _on_counts_ready(self, generation: int, table: CountTable | None,
                         authors: dict[int, dict[str, int]] | None = None) -> None:
        self._counting = False
        if table is None or generation != self._counts_generation:
            if table is not None:
                self._counts_timer.start()  # changed while counting: count again
            return
        self._counts = table
        self._author_counts = authors or {}
        self.countsChanged.emit()

    # ------------------------------------------------------------ others' changes
    def _on_batch(self, batch: changes.ChangeBatch) -> None:
        """The feed thread saw changes (ours among them): refresh what others changed."""
        if self._closed or batch.seq <= self._seen_seq:
            return
        self._seen_seq = batch.seq
        if batch.everything or batch.added:
            self.reloadNeeded.emit()  # the window reloads (calling reload()) when it can
            return
        news = [i for i, v in batch.versions if self._versions.get(i) != v]
        self._versions.update(batch.versions)
        if batch.classes:
            self.classes_changed(news)
        elif news:
            self._labels_changed(news)

    def _on_connection(self, state: QueueState) -> None:
        if not self._closed:
            self.connectionChanged.emit(state)

    def _on_flushed(self, result: FlushResult) -> None:
        """Changes made while offline were written (or refused) now the server is back."""
        if self._closed:
            return
        for change in result.applied:
            self.changed_labels(change)
        for message in result.failed:
            self.error.emit(message)
        if result.applied:
            n = sum(len(c) for c in result.applied)
            self.notice.emit(f"Back online: {n} label change{'s' if n != 1 else ''} made "
                             "offline were saved.")
        self.connectionChanged.emit(self.queue.state() if self.queue else None)


def _count(project: Project, generation: int, ready: GuiCall) -> None:
    """The counting thread (plain data only): the table, or None if the project was closed."""
    try:
        table = project.counts()
        authors = project.counts_by_author()
    except Exception:  # the project was closed meanwhile
        table, authors = None, None
    ready(generation, table, authors)


def _watch(feed: changes.ChangeFeed, queue: LabelQueue | None, stop: threading.Event,
           on_batch: GuiCall, on_connection: GuiCall, on_flushed: GuiCall) -> None:
    """The change-feed thread: waits for changes (plain data to the GUI thread); notices a
    lost server, and when it is back writes what was queued meanwhile."""
    online = True
    while not stop.is_set():
        try:
            batch = feed.wait(timeout=changes.POLL_S)
            if queue is not None and (not online or not queue.online or queue.pending()):
                result = queue.flush()
                online = queue.online
                on_flushed(result)
                if not online:
                    stop.wait(changes.POLL_S)
                    continue
            online = True
        except ServerUnreachable:
            if online and queue is not None:
                queue.mark_offline()
                on_connection(queue.state())
            online = False
            stop.wait(changes.POLL_S)
            continue
        except Exception as exc:  # the project was closed, a bug: keep going
            if stop.is_set():
                return
            log.warning("change feed: %s", exc)
            stop.wait(changes.POLL_S)
            continue
        if batch is not None:
            on_batch(batch)
