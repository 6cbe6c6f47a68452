"""The project API shared by the GUI and the CLI: classes, labels, queries and counts.

All values that leave this module are frozen dataclasses (never ORM objects), so callers in
any thread can hold them. Each method opens its own short session; every multi-row change
is one transaction, and label changes return a ``LabelChange`` the GUI can undo.

A project is a file (SQLite) or a shared database (PostgreSQL) that several labelers use at
once. The rule for two of them labeling the same image: a change made from a view of the
image that is out of date (``Seen``: someone changed it after the view was read) is refused
for that image and reported as a ``LabelConflict`` - never a silent overwrite; the rest of a
bulk change is applied. Undo and redo follow the same rule: they only touch an image that
is still as the change left it.
"""

from __future__ import annotations

import os
import sqlite3
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Select, delete, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql import ColumnElement

from densestudio.core import changes, db, files, history, machine
from densestudio.core.atomic import atomic_write_via
from densestudio.core.constants import SOURCE_CHANGED, SOURCE_HUMAN, SOURCE_PREDICTION, SPLITS
from densestudio.core.errors import ProjectError
from densestudio.core.files import Guarded, natural_key, refuse_overwriting
from densestudio.core.models import Image, LabelClass, path_text, utcnow
from densestudio.core.records import ClassInfo as ClassInfo
from densestudio.core.records import ImageInfo as ImageInfo
from densestudio.core.users import BAD_NAME_CATEGORIES
from densestudio.core.users import MAX_AUTHOR as MAX_AUTHOR
from densestudio.core.users import USER_ENV as USER_ENV
from densestudio.core.users import current_user as current_user
from densestudio.core.users import normalize_author as normalize_author

if TYPE_CHECKING:  # splits is imported where it is used
    from typing import TypeAlias

    from typing_extensions import Unpack

    from densestudio.core.splits import GroupLeaks, SplitSettings

    _AnySelect: TypeAlias = Select[Unpack[tuple[Any, ...]]]  # a SELECT of any columns

PROJECT_SUFFIX = ".dsproj"
CHUNK = 5000  # ids per IN (...) clause; well under SQLite's variable limit

# Distinct, colour-blind-friendly defaults (Okabe-Ito + Tableau extras) for new classes.
DEFAULT_COLORS = (
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9",
    "#f0e442", "#7f7f7f", "#8c564b", "#17becf", "#bcbd22", "#9467bd",
)  # fmt: skip


@dataclass(frozen=True)
class LabelState:
    label_id: int | None
    source: str | None
    labeled_by: str | None
    labeled_at: datetime | None


@dataclass(frozen=True)
class Seen:
    """What a labeling client's view of the images was when it asked for a change.

    ``versions``: the label version it saw per image (``ImageInfo.label_version``, or a
    change feed's batch); for any other image, ``seq``: the project change number its view
    is up to date with (``changes.ChangeFeed.seq``). A change to an image that was changed
    after that is refused for the image (unless it already has the label asked for).
    """

    versions: Mapping[int, int] = field(default_factory=dict)
    seq: int | None = None

    def is_stale(self, image_id: int, version: int, label_seq: int) -> bool:
        if image_id in self.versions:
            return self.versions[image_id] != version
        return self.seq is not None and label_seq > self.seq


@dataclass(frozen=True)
class LabelConflict:
    """An image a change was not applied to, because someone else changed it first."""

    image_id: int
    name: str  # file name, for messages
    label_id: int | None  # its label now
    labeled_by: str | None  # who made the change that won
    labeled_at: datetime | None

    def message(self, class_names: Mapping[int, str] | None = None,
                now: datetime | None = None) -> str:
        """"'img_001.png' was relabeled by alice a moment ago; your change was not applied"."""
        who = f" by {self.labeled_by}" if self.labeled_by else ""
        what = "unlabeled" if self.label_id is None else "relabeled"
        if self.label_id is not None and class_names and self.label_id in class_names:
            what = f"relabeled as '{class_names[self.label_id]}'"
        return f"'{self.name}' was {what}{who} {_ago(self.labeled_at, now)}; your change " \
               "was not applied"


def _ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "meanwhile"
    seconds = ((now or utcnow()) - when).total_seconds()
    if seconds < 60:
        return "a moment ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"at {when:%Y-%m-%d %H:%M} UTC"


def conflicts_message(conflicts: Sequence[LabelConflict],
                      class_names: Mapping[int, str] | None = None) -> str:
    """One message for the conflicts of a (bulk) change."""
    if len(conflicts) == 1:
        return conflicts[0].message(class_names) + "."
    by: dict[str, int] = defaultdict(int)
    for c in conflicts:
        by[c.labeled_by or "someone"] += 1
    who = ", ".join(f"{name} {n}" for name, n in sorted(by.items(), key=lambda kv: -kv[1]))
    first = ", ".join(f"'{c.name}'" for c in conflicts[:3])
    more = f" and {len(conflicts) - 3} more" if len(conflicts) > 3 else ""
    return (f"{len(conflicts)} images were changed by others meanwhile ({who}): {first}{more}; "
            "your change was not applied to them.")


@dataclass(frozen=True)
class LabelChange:
    """What a labeling operation changed: enough to undo (``before``) and redo (``after``),
    each image's label version after it, and the images it was refused for."""

    before: tuple[tuple[int, LabelState], ...]
    after: tuple[tuple[int, LabelState], ...]
    versions: tuple[tuple[int, int], ...] = ()
    conflicts: tuple[LabelConflict, ...] = ()

    @property
    def image_ids(self) -> list[int]:
        return [image_id for image_id, _ in self.after]

    def __len__(self) -> int:
        return len(self.after)


@dataclass(frozen=True)
class RemovedClasses:
    """Classes removed by delete or merge, with the label change, so both can be undone."""

    classes: tuple[ClassInfo, ...]
    change: LabelChange


@dataclass(frozen=True)
class ImageFilter:
    """Which images a gallery page or a count covers. Empty filter = every image."""

    class_ids: tuple[int, ...] | None = None  # labeled with one of these classes
    unlabeled: bool = False  # only images without a label
    split: str | None = None  # "train" | "val" | "test" | "none"
    text: str = ""  # substring of the file name (case-insensitive)
    missing: bool | None = None  # only missing (True) / present (False) files
    image_ids: tuple[int, ...] | None = None  # explicit set, e.g. a confusion-matrix cell


SORT_KEYS = ("name", "added", "class")


@dataclass(frozen=True)
class CountTable:
    """Image counts by (class id or None for unlabeled) x (split or None)."""

    cells: dict[tuple[int | None, str | None], int] = field(default_factory=dict)

    def count(
        self, class_id: int | EllipsisType | None = ..., split: str | EllipsisType | None = ...
    ) -> int:
        """Images of ``class_id`` in ``split``; ``...`` (the default) means any."""
        return sum(
            n
            for (c, s), n in self.cells.items()
            if (class_id is ... or c == class_id) and (split is ... or s == split)
        )

    @property
    def total(self) -> int:
        return sum(self.cells.values())


def _class_info(row: LabelClass) -> ClassInfo:
    return ClassInfo(row.id, row.name, row.color, row.position, row.shortcut)


_IMAGE_COLUMNS = (
    Image.id, Image.path, Image.filename, Image.folder, Image.content_hash, Image.byte_size,
    Image.width, Image.height, Image.mode, Image.bit_depth, Image.added_at, Image.missing,
    Image.label_id, Image.label_source, Image.labeled_by, Image.labeled_at, Image.split,
    Image.label_version,
)  # fmt: skip


def _chunks(ids: Sequence[int], size: int = CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def shortcut_for_position(position: int) -> str | None:
    return str(position + 1) if position < 9 else None


class Project:
    """An open project: a file, or a shared database. Thread-safe: every call uses its own
    session."""

    def __init__(self, database: db.Database) -> None:
        self._db = database
        self._files_root: Path | None = None

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def create(cls, target: str | Path | db.ServerURL,
               files_root: str | Path | None = None) -> Project:
        """A new project file, or the tables of a shared project in an empty database;
        ``files_root``: a shared project's folder for runs (see ``files_root``)."""
        machine.load_root_map()
        target = db.project_target(target)
        if isinstance(target, Path) and target.suffix == "":
            target = target.with_name(target.name + PROJECT_SUFFIX)
        project = cls(db.create_database(target))
        if files_root is not None:
            try:
                project.set_files_root(files_root)
            except BaseException:
                project.close()
                raise
        return project

    @classmethod
    def open(cls, target: str | Path | db.ServerURL) -> Project:
        """Open a project file or a shared project (``postgresql://USER@HOST/DATABASE``)."""
        machine.load_root_map()
        return cls(db.open_database(db.project_target(target)))

    def close(self) -> None:
        self._db.dispose()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The project file, absolute (a shared project has none: ProjectError)."""
        return self._db.path

    @property
    def target(self) -> Path | db.ServerURL:
        """What was opened: the project file or the server URL."""
        return self._db.target

    @property
    def shared(self) -> bool:
        """A shared project on a database server (several labelers at once)."""
        return self._db.is_server

    @property
    def location(self) -> str:
        """The file's path or the URL (without a password), for messages and lists."""
        return db.describe(self._db.target)

    @property
    def name(self) -> str:
        """A short name: the file name without its suffix, or the database's name."""
        target = self._db.target
        return target.name if isinstance(target, db.ServerURL) else target.stem

    @property
    def read_only(self) -> str | None:
        """Why the project is open read-only (file or folder not writable), or None."""
        return self._db.read_only

    def on_lock_wait(self, notify: Callable[[str], None], wait_s: float | None = None) -> None:
        """Who hears "waiting for another DenseStudio process that is writing to this
        project..." (called in the waiting thread), and how long a write waits for another
        process's lock before it fails with a ProjectError (default ``db.LOCK_WAIT_S``)."""
        self._db.lock_wait.notify = notify
        self._db.lock_wait.wait_s = wait_s

    @property
    def cache_dir(self) -> Path:
        """Folder for regenerable caches (thumbnails, decoded images): beside a project
        file; on this machine for a shared project (each machine keeps its own)."""
        target = self._db.target
        if isinstance(target, db.ServerURL):
            return machine.cache_dir() / "shared" / target.key
        return target.with_name(target.name + "-cache")

    @property
    def files_root(self) -> Path:
        """The folder a project's own files (training runs, checkpoints) live in, and that
        stored paths are relative to: a project file's folder; for a shared project the
        folder set with ``set_files_root`` - a shared folder every machine can read,
        through this machine's root mapping - or, until one is set, a folder on this
        machine."""
        target = self._db.target
        if not isinstance(target, db.ServerURL):
            return target.parent
        if self._files_root is None:
            stored = self.get_meta("files_root")
            self._files_root = (Path(machine.root_map().to_local(stored)) if stored
                                else machine.data_dir() / "shared" / target.key)
        return self._files_root

    def set_files_root(self, folder: str | Path) -> None:
        """Set a shared project's files root (stored as this machine names it; others map
        it in their ``roots.json``)."""
        if not self.shared:
            raise ProjectError("A project file keeps its files beside it; only a shared "
                               "project has a files root to set.")
        folder = Path(os.path.abspath(Path(folder).expanduser()))
        self.set_meta("files_root", machine.root_map().to_stored(str(folder)))
        self._files_root = folder

    @property
    def runs_dir(self) -> Path:
        """Where training runs write their checkpoints (``<runs_dir>/<run id>/``)."""
        target = self._db.target
        if isinstance(target, db.ServerURL):
            return self.files_root / "runs"
        return target.with_name(target.name + "-runs")

    @property
    def project_id(self) -> str:
        """A random id given to the project once (meta 'project_id'), recorded in its
        checkpoints so that another project's model file is never taken for its own; ""
        for an old project open read-only, which cannot be given one."""
        pid = self.get_meta("project_id")
        if pid is None and not self.read_only:
            import uuid

            with self.transaction() as s:
                pid = db.get_meta(s, "project_id")  # another process may have just set it
                if pid is None:
                    pid = uuid.uuid4().hex
                    db.set_meta(s, "project_id", pid)
        return pid or ""

    def guarded_paths(self) -> list[Guarded]:
        """What no command may write an output over: the project file with its SQLite
        side files, and the runs (checkpoints) and cache folders."""
        out = [Guarded(self.runs_dir, "the project's runs folder (checkpoints)", folder=True),
               Guarded(self.cache_dir, "the project's cache folder", folder=True)]
        if not self.shared:
            out += [Guarded(self.path, "the project file")]
            out += [Guarded(self.path.with_name(self.path.name + side),
                            f"the project's SQLite {side[1:]} file")
                    for side in ("-wal", "-shm", "-journal")]
        return out

    def refuse_overwriting(self, out: str | Path, also: Iterable[Guarded] = ()) -> None:
        """Refuse an output path that is the project, its runs or caches, one of its
        images, or one of ``also`` (the inputs of the command), before anything is
        written; see ``files.refuse_overwriting``."""
        refuse_overwriting(Path(out), [*self.guarded_paths(), *also])
        real = os.path.realpath(out)
        with self.session() as s:
            hit = s.scalar(select(Image.path).where(
                Image.path.in_({real, os.path.abspath(out)})).limit(1))
        if hit is not None:
            raise ProjectError(f"Refusing to write {out}: it is an image of this project "
                               f"({hit}); choose another output file.")

    def backup(self, out: str | Path) -> Path:
        """Write a consistent copy of the project file to ``out`` (a folder: the copy goes
        inside it) while it may be open; see ``db.sqlite_backup``. Returns the copy's path."""
        if self.shared:
            raise ProjectError(f"{self.location} is a shared project on a database server; "
                               "back it up with the server's tools (pg_dump).")
        dest = Path(out)
        if dest.is_dir():
            dest = dest / f"{self.path.stem}-backup-{utcnow():%Y%m%d-%H%M%S}{self.path.suffix}"
        self.refuse_overwriting(dest)
        files.check_output(dest)

        def write(tmp: Path) -> None:
            tmp.unlink()  # SQLite writes a fresh database file
            try:
                db.sqlite_backup(self.path, tmp)
            except sqlite3.Error as exc:
                raise ProjectError(db.explain_error(exc, self.path)
                                   or f"Cannot back up {self.path}: {exc}") from exc

        atomic_write_via(dest, write)
        return dest

    def stored_path(self, path: str | Path) -> str:
        """``path`` as kept in the project: relative to the files root when inside it."""
        return db.stored_path(path, self.files_root)

    def resolve_path(self, stored: str) -> Path:
        """The absolute path of a stored one, whatever the working directory is."""
        return db.resolve_stored_path(stored, self.files_root)

    @property
    def engine(self) -> Engine:
        return self._db.engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reads (no transaction kept open afterwards)."""
        with self._storage_errors(), self._db.sessions() as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose changes commit together at the end, or not at all.

        It holds the project's write lock from the start (another process's writes wait,
        with a notice, see ``on_lock_wait``)."""
        if self.read_only:
            raise ProjectError(f"The project is open read-only ({self.read_only}); nothing "
                               "was changed.")
        with self._storage_errors(), self._db.writer.begin() as session:
            yield session

    @contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """Disk full, a damaged file, a lock held too long: one clear ProjectError."""
        try:
            yield
        except DBAPIError as exc:
            error = db.storage_error(exc, self._db.target)
            if error is None:
                raise
            raise error from exc

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self.session() as s:
            return db.get_meta(s, key, default)

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as s:
            db.set_meta(s, key, value)

    # ----------------------------------------------------------------- classes
    def classes(self) -> list[ClassInfo]:
        with self.session() as s:
            rows = s.scalars(select(LabelClass).order_by(LabelClass.position, LabelClass.id))
            return [_class_info(r) for r in rows]

    def class_by_name(self, name: str) -> ClassInfo | None:
        """The class with this name (Unicode-normalized, ignoring upper/lower case)."""
        with self.session() as s:
            row = find_class(s, name)
            return _class_info(row) if row else None

    def add_class(self, name: str, color: str | None = None) -> ClassInfo:
        name = normalize_class_name(name)
        with self.transaction() as s:
            _refuse_taken(s, name)
            return add_class_in_session(s, name, color)

    def ensure_classes(self, names: Iterable[str]) -> dict[str, int]:
        """Ids for these class names (an existing class that differs only in case or
        Unicode form is reused), creating the missing ones in one transaction."""
        with self.transaction() as s:
            ids: dict[str, int] = {}
            for name in names:
                row = find_class(s, name)
                ids[name] = row.id if row else add_class_in_session(
                    s, normalize_class_name(name), None).id
            return ids

    def rename_class(self, class_id: int, name: str) -> ClassInfo:
        name = normalize_class_name(name)
        with self.transaction() as s:
            row = _get_class(s, class_id)
            _refuse_taken(s, name, class_id)
            row.name = name
            s.flush()
            changes.bump(s, classes=True)
            return _class_info(row)

    def recolor_class(self, class_id: int, color: str) -> ClassInfo:
        with self.transaction() as s:
            row = _get_class(s, class_id)
            row.color = color
            changes.bump(s, classes=True)
            return _class_info(row)

    def reorder_classes(self, class_ids: Sequence[int]) -> None:
        """Put classes in this order (positions and 1-9 shortcuts follow the order)."""
        with self.transaction() as s:
            rows = {r.id: r for r in s.scalars(select(LabelClass))}
            if set(class_ids) != set(rows):
                raise ProjectError("Reorder must list every class exactly once.")
            for position, class_id in enumerate(class_ids):
                rows[class_id].position = position
                rows[class_id].shortcut = shortcut_for_position(position)
            changes.bump(s, classes=True)

    def delete_class(self, class_id: int, how: str = history.HOW_CLASS_DELETE
                     ) -> RemovedClasses:
        """Delete a class; its images become unlabeled (never deleted)."""
        return self._remove_classes([class_id], new_label=None, how=how)

    def merge_classes(self, source_ids: Sequence[int], target_id: int,
                      how: str = history.HOW_CLASS_MERGE) -> RemovedClasses:
        """Move every image of the source classes into the target and delete the sources."""
        if target_id in source_ids:
            raise ProjectError("Cannot merge a class into itself.")
        return self._remove_classes(list(source_ids), new_label=target_id, how=how)

    def _remove_classes(self, class_ids: list[int], new_label: int | None, how: str
                        ) -> RemovedClasses:
        with self.transaction() as s:
            removed = tuple(_class_info(_get_class(s, cid)) for cid in class_ids)
            if new_label is not None:
                _get_class(s, new_label)
            ids = list(s.scalars(select(Image.id).where(Image.label_id.in_(class_ids))))
            change = _set_labels(s, ids, new_label, SOURCE_HUMAN, current_user(), how)
            s.execute(delete(LabelClass).where(LabelClass.id.in_(class_ids)))
            _renumber_positions(s)
            changes.bump(s, classes=True)
        return RemovedClasses(removed, change)

    def restore_classes(self, removed: RemovedClasses, how: str = history.HOW_UNDO
                        ) -> LabelChange:
        """Undo a delete or merge: the classes come back with their ids, and their images
        with their labels - those nobody relabeled since (the others are the result's
        ``conflicts``)."""
        with self.transaction() as s:
            for info in removed.classes:
                s.add(
                    LabelClass(
                        id=info.id, name=info.name, color=info.color,
                        position=info.position, shortcut=info.shortcut,
                    )
                )  # fmt: skip
            s.flush()
            done = _revert(s, removed.change.after, removed.change.before, how)
            _renumber_positions(s, prefer={c.id: c.position for c in removed.classes})
            changes.bump(s, classes=True)
            return done

    def redo_remove_classes(self, removed: RemovedClasses, how: str = history.HOW_REDO
                            ) -> LabelChange:
        """Delete (or merge) the classes again. An image of them that someone relabeled
        since keeps its new label only if that is not one of these classes; the others
        are unlabeled (or moved to the merge target) whatever happened, since their class
        is going away."""
        with self.transaction() as s:
            ids = [c.id for c in removed.classes]
            done = _revert(s, removed.change.before, removed.change.after, how)
            target = removed.change.after[0][1].label_id if removed.change.after else None
            left = list(s.scalars(select(Image.id).where(Image.label_id.in_(ids))))
            forced = _set_labels(s, left, target, SOURCE_HUMAN, current_user(), how)
            s.execute(delete(LabelClass).where(LabelClass.id.in_(ids)))
            _renumber_positions(s)
            changes.bump(s, classes=True)
            return _joined([done, forced])

    # ----------------------------------------------------------------- labels
    def set_labels(
        self,
        image_ids: Sequence[int],
        label_id: int | None,
        source: str = SOURCE_HUMAN,
        who: str | None = None,
        how: str = history.HOW_API,
        expected: Seen | None = None,
    ) -> LabelChange:
        """Label (or, with None, unlabel) many images in one transaction, recording who;
        ``how`` goes into the label history (``history.HOWS``: keyboard, bulk, review, ...).

        With ``expected`` (the caller's view), an image someone changed after that view
        is left as it is and listed in the result's ``conflicts``; the others are changed.
        """
        who = normalize_author(who) if who else current_user()
        with self.transaction() as s:
            if label_id is not None:
                _get_class(s, label_id)
            return _set_labels(s, list(image_ids), label_id, source, who, how, expected)

    def set_labels_many(
        self, assignments: Sequence[tuple[int, int | None]], source: str = SOURCE_HUMAN,
        how: str | None = None, who: str | None = None, expected: Seen | None = None,
    ) -> LabelChange:
        """Give each image its own label (e.g. accepting many predictions) in one transaction.
        ``how`` defaults to "accepted-prediction" for predictions, else "bulk"."""
        if how is None:
            how = history.HOW_PREDICTION if source == SOURCE_PREDICTION else history.HOW_BULK
        who = normalize_author(who) if who else current_user()
        by_label: dict[int | None, list[int]] = defaultdict(list)
        for image_id, label_id in assignments:
            by_label[label_id].append(image_id)
        parts: list[LabelChange] = []
        with self.transaction() as s:
            for label_id in by_label:
                if label_id is not None:
                    _get_class(s, label_id)
            for label_id, ids in by_label.items():
                parts.append(_set_labels(s, ids, label_id, source, who, how, expected))
        return _joined(parts)

    def undo_labels(self, change: LabelChange, how: str = history.HOW_UNDO) -> LabelChange:
        """Put the images of ``change`` back as they were - each one only if it is still as
        the change left it; the others (someone changed them since) are the ``conflicts``
        of the result, which says what the undo did (and the new label versions)."""
        with self.transaction() as s:
            return _revert(s, change.after, change.before, how)

    def redo_labels(self, change: LabelChange, how: str = history.HOW_REDO) -> LabelChange:
        """Make ``change`` again after an undo, under the same rule as ``undo_labels``."""
        with self.transaction() as s:
            return _revert(s, change.before, change.after, how)

    def counts_by_author(self) -> dict[int, dict[str, int]]:
        """Labeled images per class and per author (``labeled_by``; "" when unknown), for
        the Classes panel of a project several people label."""
        with self.session() as s:
            rows = s.execute(
                select(Image.label_id, Image.labeled_by, func.count(Image.id))
                .where(Image.label_id.is_not(None))
                .group_by(Image.label_id, Image.labeled_by))
            table: dict[int, dict[str, int]] = defaultdict(dict)
            for label_id, who, n in rows:
                if label_id is not None:  # always (the WHERE); says so to the type checker
                    counts = table[label_id]
                    counts[who or ""] = counts.get(who or "", 0) + n
            return dict(table)

    # ----------------------------------------------------------------- queries
    def count_images(self, flt: ImageFilter = ImageFilter()) -> int:
        with self.session() as s:
            return s.scalar(_apply_filter(select(func.count(Image.id)), flt)) or 0

    def image_ids(
        self, flt: ImageFilter = ImageFilter(), sort: str = "name", descending: bool = False
    ) -> list[int]:
        """Ids of all matching images in display order (cheap even at 100k: ints only)."""
        with self.session() as s:
            stmt = _apply_sort(_apply_filter(select(Image.id), flt), sort, descending)
            return list(s.scalars(stmt))

    def page(
        self,
        flt: ImageFilter = ImageFilter(),
        sort: str = "name",
        descending: bool = False,
        offset: int = 0,
        limit: int = 200,
    ) -> list[ImageInfo]:
        with self.session() as s:
            stmt = _apply_sort(_apply_filter(select(*_IMAGE_COLUMNS), flt), sort, descending)
            rows = s.execute(stmt.offset(offset).limit(limit))
            return [ImageInfo(*r) for r in rows]

    def images_by_ids(self, image_ids: Sequence[int]) -> list[ImageInfo]:
        """Rows for these ids, in the order given (missing ids are skipped)."""
        found: dict[int, ImageInfo] = {}
        with self.session() as s:
            for chunk in _chunks(list(image_ids)):
                for r in s.execute(select(*_IMAGE_COLUMNS).where(Image.id.in_(chunk))):
                    # select(*columns) types its rows as one column wide
                    found[r[0]] = ImageInfo(*r)  # type: ignore[call-arg]
        return [found[i] for i in image_ids if i in found]

    def image(self, image_id: int) -> ImageInfo:
        rows = self.images_by_ids([image_id])
        if not rows:
            raise ProjectError(f"No image with id {image_id} in this project.")
        return rows[0]

    def counts(self) -> CountTable:
        with self.session() as s:
            rows = s.execute(
                select(Image.label_id, Image.split, func.count(Image.id)).group_by(
                    Image.label_id, Image.split
                )
            )
            return CountTable({(c, sp): n for c, sp, n in rows})

    def missing_images(self) -> list[ImageInfo]:
        return self.page(ImageFilter(missing=True), limit=1_000_000)

    def flag_missing(self, image_ids: Sequence[int]) -> None:
        """Mark images whose files turned out to be gone (the rows and labels stay)."""
        with self.transaction() as s:
            for chunk in _chunks(list(image_ids)):
                s.execute(update(Image).where(Image.id.in_(chunk)).values(missing=True))
            changes.bump(s, image_ids)

    def refresh_missing(self) -> tuple[int, int]:
        """Check every file on disk; flag vanished ones. Returns (now missing, restored)."""
        with self.session() as s:
            rows = list(s.execute(select(Image.id, Image.path, Image.missing)))
        gone = [i for i, p, m in rows if not m and not Path(p).is_file()]
        back = [i for i, p, m in rows if m and Path(p).is_file()]
        with self.transaction() as s:
            for ids, flag in ((gone, True), (back, False)):
                for chunk in _chunks(ids):
                    s.execute(update(Image).where(Image.id.in_(chunk)).values(missing=flag))
            if gone or back:
                changes.bump(s, gone + back)
        return len(gone) + sum(1 for _, _, m in rows if m) - len(back), len(back)


# --------------------------------------------------------------------- helpers
MAX_CLASS_NAME = 200  # characters (the column's size)
# Characters a class name cannot hold: controls (newline, tab, NUL, ...), line/paragraph
# separators and lone surrogates (undecodable file-name bytes).


def class_key(name: str) -> str:
    """What makes two class names the same class: Unicode form and case do not count."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def normalize_class_name(name: str) -> str:
    """A class name as typed (CLI, GUI), checked: NFC, trimmed, 1-200 characters, no
    control characters. Raises ProjectError with the reason otherwise."""
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise ProjectError("A class name cannot be empty.")
    if any(unicodedata.category(ch) in BAD_NAME_CATEGORIES for ch in name):
        raise ProjectError("A class name cannot contain line breaks, tabs or other control "
                           "characters.")
    if len(name) > MAX_CLASS_NAME:
        raise ProjectError(f"A class name can have at most {MAX_CLASS_NAME} characters "
                           f"(this one has {len(name)}).")
    return name


def class_name_from_folder(folder: str) -> tuple[str | None, str | None]:
    """A class name made from a folder name, and a note when it had to be changed.

    Undecodable bytes become U+FFFD and control characters spaces (the import goes on); a
    name over 200 characters is refused as a typed one is - never cut, which could merge two
    folders into one class -: (None, the reason), and its images stay unlabeled.
    """
    text = unicodedata.normalize(
        "NFC", folder.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    bad = any(unicodedata.category(ch) in BAD_NAME_CATEGORIES for ch in text)
    cleaned = "".join(
        " " if unicodedata.category(ch) in BAD_NAME_CATEGORIES else ch for ch in text).strip()
    if not cleaned:
        return None, None
    notes = []
    if bad:
        notes.append("control characters replaced by spaces")
    if len(cleaned) > MAX_CLASS_NAME:
        return None, (f"a class name can have at most {MAX_CLASS_NAME} characters, this one "
                      f"has {len(cleaned)}")
    return cleaned, "; ".join(notes) or None


def find_class(s: Session, name: str, exclude_id: int | None = None) -> LabelClass | None:
    """The class called ``name``: exact (after NFC) first, else ignoring case."""
    rows = [r for r in s.scalars(select(LabelClass)) if r.id != exclude_id]
    exact = unicodedata.normalize("NFC", name).strip()
    key = class_key(name)
    return (next((r for r in rows if unicodedata.normalize("NFC", r.name) == exact), None)
            or next((r for r in rows if class_key(r.name) == key), None))


def _refuse_taken(s: Session, name: str, exclude_id: int | None = None) -> None:
    row = find_class(s, name, exclude_id)
    if row is not None:
        how = "" if row.name == name else " (class names ignore upper/lower case)"
        raise ProjectError(f"A class named '{row.name}' already exists{how}.")


def _get_class(s: Session, class_id: int) -> LabelClass:
    row = s.get(LabelClass, class_id)
    if row is None:
        raise ProjectError(f"No class with id {class_id} in this project.")
    return row


def add_class_in_session(s: Session, name: str, color: str | None) -> ClassInfo:
    count = s.scalar(select(func.count(LabelClass.id))) or 0
    used = set(s.scalars(select(LabelClass.color)))
    if color is None:
        free = [c for c in DEFAULT_COLORS if c not in used]
        color = free[0] if free else DEFAULT_COLORS[count % len(DEFAULT_COLORS)]
    row = LabelClass(name=name, color=color, position=count, shortcut=shortcut_for_position(count))
    s.add(row)
    s.flush()
    changes.bump(s, classes=True)
    return _class_info(row)


def _renumber_positions(s: Session, prefer: dict[int, int] | None = None) -> None:
    """Make positions 0..n-1 again; classes in ``prefer`` go back to their old positions."""
    prefer = prefer or {}
    rows = sorted(s.scalars(select(LabelClass)), key=lambda r: (r.position, r.id))
    ordered = [r for r in rows if r.id not in prefer]
    for row in sorted((r for r in rows if r.id in prefer), key=lambda r: prefer[r.id]):
        ordered.insert(min(prefer[row.id], len(ordered)), row)
    for position, row in enumerate(ordered):
        row.position = position
        row.shortcut = shortcut_for_position(position)


@dataclass(frozen=True)
class _Row:
    state: LabelState
    version: int
    label_seq: int
    name: str


def _read_states(s: Session, ids: Sequence[int]) -> dict[int, _Row]:
    rows_by_id: dict[int, _Row] = {}
    for chunk in _chunks(ids):
        rows = s.execute(
            select(
                Image.id, Image.label_id, Image.label_source, Image.labeled_by,
                Image.labeled_at, Image.label_version, Image.label_seq, Image.path,
            ).where(Image.id.in_(chunk))
        )
        for image_id, label_id, src, who, when, version, seq, path in rows:
            rows_by_id[image_id] = _Row(LabelState(label_id, src, who, when), version, seq,
                                        path_text(Path(path).name))
    return rows_by_id


def _conflict(image_id: int, row: _Row) -> LabelConflict:
    return LabelConflict(image_id, row.name, row.state.label_id, row.state.labeled_by,
                         row.state.labeled_at)


def _set_labels(
    s: Session, ids: list[int], label_id: int | None, source: str, who: str,
    how: str = history.HOW_API, expected: Seen | None = None,
) -> LabelChange:
    """The one labeling step. It runs under the project write lock (see db), so the rows
    read here cannot change before they are written: the check and the write are one."""
    rows = _read_states(s, ids)
    now = utcnow()
    new = (
        LabelState(None, None, who, now)  # an unlabel records who did it, too
        if label_id is None
        else LabelState(label_id, source, who, now)
    )
    # The same class again on a label marked for review (its file changed) confirms it.
    todo = [i for i in dict.fromkeys(ids) if i in rows and (
        rows[i].state.label_id != label_id
        or (label_id is not None and rows[i].state.source == SOURCE_CHANGED))]
    stale = {i for i in todo
             if expected is not None and expected.is_stale(i, rows[i].version,
                                                           rows[i].label_seq)}
    changed = [i for i in todo if i not in stale]
    versions = _apply_states(s, [(i, new) for i in changed], rows)
    history.record(s, [(i, rows[i].state.label_id, label_id) for i in changed], how, who, now)
    return LabelChange(
        tuple((i, rows[i].state) for i in changed), tuple((i, new) for i in changed),
        versions, tuple(_conflict(i, rows[i]) for i in todo if i in stale),
    )


set_labels_in_session = _set_labels  # for core modules that label inside their transaction


def _joined(parts: Sequence[LabelChange]) -> LabelChange:
    return LabelChange(*(tuple(x for p in parts for x in getattr(p, name))
                         for name in ("before", "after", "versions", "conflicts")))


def _revert(
    s: Session, expect: Sequence[tuple[int, LabelState]],
    states: Sequence[tuple[int, LabelState]], how: str,
) -> LabelChange:
    """Set each image to its state in ``states`` if it is still in its state in ``expect``
    (undo: expect the change's ``after``; redo: its ``before``); an image in neither (someone
    changed it since) is left as it is and returned."""
    rows = _read_states(s, [i for i, _ in states])
    wanted = dict(expect)
    apply, conflicts = [], []
    for image_id, state in states:
        row = rows.get(image_id)
        if row is None or row.state == state:
            continue  # gone, or already so
        if row.state == wanted.get(image_id):
            apply.append((image_id, state))
        else:
            conflicts.append(_conflict(image_id, row))
    versions = _apply_states(s, apply, rows)
    history.record(s, [(i, rows[i].state.label_id, state.label_id) for i, state in apply
                       if rows[i].state.label_id != state.label_id], how, current_user())
    return LabelChange(tuple((i, rows[i].state) for i, _ in apply), tuple(apply), versions,
                       tuple(conflicts))


def _apply_states(
    s: Session, states: Sequence[tuple[int, LabelState]], rows: Mapping[int, _Row]
) -> tuple[tuple[int, int], ...]:
    """Write label states (label version +1, stamped with this transaction's change
    number); returns each image's new version."""
    from densestudio.core import splits  # splits imports store's types

    if not states:
        return ()
    seq = changes.bump(s)
    grouped: dict[LabelState, list[int]] = defaultdict(list)
    for image_id, state in states:
        grouped[state].append(image_id)
    for state, ids in grouped.items():
        for chunk in _chunks(ids):
            s.execute(
                update(Image)
                .where(Image.id.in_(chunk))
                .values(
                    label_id=state.label_id,
                    label_source=state.source,
                    labeled_by=state.labeled_by,
                    labeled_at=state.labeled_at,
                    label_version=Image.label_version + 1,
                    change_seq=seq,
                    label_seq=seq,
                )
            )
    splits.release_from_test(s, [i for i, state in states if state.source == SOURCE_PREDICTION])
    splits.assign_missing_splits(s, [image_id for image_id, _ in states])
    return tuple((i, rows[i].version + 1) for i, _ in states)


def _apply_filter(stmt: _AnySelect, flt: ImageFilter) -> _AnySelect:
    if flt.image_ids is not None:
        stmt = stmt.where(Image.id.in_(flt.image_ids))
    if flt.class_ids is not None and flt.unlabeled:
        stmt = stmt.where(or_(Image.label_id.in_(flt.class_ids), Image.label_id.is_(None)))
    elif flt.class_ids is not None:
        stmt = stmt.where(Image.label_id.in_(flt.class_ids))
    elif flt.unlabeled:
        stmt = stmt.where(Image.label_id.is_(None))
    if flt.split == "none":
        stmt = stmt.where(Image.split.is_(None))
    elif flt.split is not None:
        if flt.split not in SPLITS:
            raise ProjectError(f"Unknown split '{flt.split}'.")
        stmt = stmt.where(Image.split == flt.split)
    if flt.text:
        pattern = "%" + flt.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace(
            "_", "\\_"
        ) + "%"
        stmt = stmt.where(Image.filename.like(pattern, escape="\\"))
    if flt.missing is not None:
        stmt = stmt.where(Image.missing.is_(flt.missing))
    return stmt


def _apply_sort(stmt: _AnySelect, sort: str, descending: bool) -> _AnySelect:
    keys: list[ColumnElement[Any] | InstrumentedAttribute[Any]]
    if sort == "name":
        keys = [Image.name_key, Image.id]
    elif sort == "added":
        keys = [Image.added_at, Image.id]
    elif sort == "class":
        position = (
            select(LabelClass.position)
            .where(LabelClass.id == Image.label_id)
            .scalar_subquery()
        )
        keys = [func.coalesce(position, 1_000_000), Image.name_key, Image.id]
    else:
        raise ProjectError(f"Unknown sort key '{sort}' (choose from {', '.join(SORT_KEYS)}).")
    return stmt.order_by(*[k.desc() if descending else k for k in keys])


def bulk_insert_images(s: Session, rows: list[dict[str, Any]]) -> None:
    """Insert image rows (dicts of Image columns) in one statement; used by the importer.
    Other clients' change feeds see them as changed rows."""
    if rows:
        seq = changes.bump(s, added=True)
        # A Core insert of the table: one multi-row statement per batch on either database
        # (the ORM's bulk path sends PostgreSQL one statement per row).
        s.execute(insert(Image.metadata.tables[Image.__tablename__]),
                  [{**row, "name_key": natural_key(row["filename"]), "change_seq": seq}
                   for row in rows])


# Split management lives in splits.py; these wrappers give GUI and CLI one entry point.
def split_settings(project: Project) -> SplitSettings:
    from densestudio.core import splits

    with project.session() as s:
        return splits.read_settings(s)


def split_leaks(project: Project) -> tuple[GroupLeaks, int]:
    """Groups spanning splits / with label conflicts, and how many test labels a model made:
    what the Train tab, the Review header and the report warn about."""
    from densestudio.core import splits

    with project.session() as s:
        return splits.group_leaks(s), splits.model_labels_in_test(s)


def resplit(
    project: Project, ratios: tuple[float, float, float] | None = None, seed: int | None = None
) -> int:
    from densestudio.core import splits

    with project.transaction() as s:
        return splits.resplit(s, ratios, seed)


def lock_test_split(project: Project, locked: bool) -> None:
    from densestudio.core import splits

    with project.transaction() as s:
        splits.set_test_locked(s, locked)


def set_split_group_by(project: Project, group_by: str, apply: bool = True) -> int:
    """Keep groups together: "" (none), "folder" or "regex:PATTERN" (see splits).

    With ``apply`` every labeled image is re-assigned at once (same seed; a locked test set
    stays as it is), in the same transaction. Returns how many images were assigned.
    """
    from densestudio.core import splits

    with project.transaction() as s:
        splits.set_group_by(s, group_by)
        if not apply:
            return 0
        return splits.resplit(s, None, splits.read_settings(s).seed)
