"""The project API shared by the GUI and the CLI: classes, labels, queries and counts.

All values that leave this module are frozen dataclasses (never ORM objects), so callers in
any thread can hold them. Each method opens its own short session; every multi-row change
is one transaction, and label changes return a ``LabelChange`` the GUI can undo.
"""

from __future__ import annotations

import getpass
import os
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Select, delete, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from densestudio.core import db, history
from densestudio.core.constants import SOURCE_HUMAN, SOURCE_PREDICTION, SPLITS
from densestudio.core.errors import ProjectError
from densestudio.core.models import Image, LabelClass, utcnow

PROJECT_SUFFIX = ".dsproj"
CHUNK = 5000  # ids per IN (...) clause; well under SQLite's variable limit

# Distinct, colour-blind-friendly defaults (Okabe-Ito + Tableau extras) for new classes.
DEFAULT_COLORS = (
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9",
    "#f0e442", "#7f7f7f", "#8c564b", "#17becf", "#bcbd22", "#9467bd",
)  # fmt: skip


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    color: str
    position: int
    shortcut: str | None


@dataclass(frozen=True)
class ImageInfo:
    id: int
    path: str
    filename: str
    folder: str
    content_hash: str
    byte_size: int
    width: int
    height: int
    mode: str
    bit_depth: int
    added_at: datetime
    missing: bool
    label_id: int | None
    label_source: str | None
    labeled_by: str | None
    labeled_at: datetime | None
    split: str | None

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class LabelState:
    label_id: int | None
    source: str | None
    labeled_by: str | None
    labeled_at: datetime | None


@dataclass(frozen=True)
class LabelChange:
    """What a labeling operation changed: enough to undo (``before``) and redo (``after``)."""

    before: tuple[tuple[int, LabelState], ...]
    after: tuple[tuple[int, LabelState], ...]

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

    def count(self, class_id: int | None = ..., split: str | None = ...) -> int:  # type: ignore[assignment]
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
)  # fmt: skip


def _chunks(ids: Sequence[int], size: int = CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def shortcut_for_position(position: int) -> str | None:
    return str(position + 1) if position < 9 else None


USER_ENV = "DENSESTUDIO_USER"  # who label changes and approvals are recorded as


def current_user() -> str:
    """The name recorded as who did something: $DENSESTUDIO_USER (set by ``--user`` or a
    preference) or else the OS login name."""
    name = os.environ.get(USER_ENV, "").strip()
    if name:
        return name[:64]
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers, services)
        return "user"


class Project:
    """An open project file. Thread-safe: every call uses its own session."""

    def __init__(self, database: db.Database) -> None:
        self._db = database

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def create(cls, path: str | Path) -> Project:
        path = db.project_target(path)
        if path.suffix == "":
            path = path.with_name(path.name + PROJECT_SUFFIX)
        return cls(db.create_database(path))

    @classmethod
    def open(cls, path: str | Path) -> Project:
        return cls(db.open_database(db.project_target(path)))

    def close(self) -> None:
        self._db.dispose()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The project file, absolute."""
        return self._db.path

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
        """Folder beside the project for regenerable caches (thumbnails, decoded images)."""
        return self.path.with_name(self.path.name + "-cache")

    def stored_path(self, path: str | Path) -> str:
        """``path`` as kept in the project: relative to its folder when inside it."""
        return db.stored_path(path, self.path)

    def resolve_path(self, stored: str) -> Path:
        """The absolute path of a stored one, whatever the working directory is."""
        return db.resolve_stored_path(stored, self.path)

    @property
    def engine(self):  # TYPEHINT - sqlalchemy Engine
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
            message = db.explain_error(exc, self.path)
            if message is None:
                raise
            raise ProjectError(message) from exc

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
            return _class_info(row)

    def recolor_class(self, class_id: int, color: str) -> ClassInfo:
        with self.transaction() as s:
            row = _get_class(s, class_id)
            row.color = color
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
        return RemovedClasses(removed, change)

    def restore_classes(self, removed: RemovedClasses, how: str = history.HOW_UNDO) -> None:
        """Undo a delete or merge: the classes come back with their ids and labels."""
        with self.transaction() as s:
            for info in removed.classes:
                s.add(
                    LabelClass(
                        id=info.id, name=info.name, color=info.color,
                        position=info.position, shortcut=info.shortcut,
                    )
                )  # fmt: skip
            s.flush()
            _apply_states(s, removed.change.before, how)
            _renumber_positions(s, prefer={c.id: c.position for c in removed.classes})

    def redo_remove_classes(self, removed: RemovedClasses, how: str = history.HOW_REDO
                            ) -> None:
        with self.transaction() as s:
            _apply_states(s, removed.change.after, how)
            ids = [c.id for c in removed.classes]
            s.execute(delete(LabelClass).where(LabelClass.id.in_(ids)))
            _renumber_positions(s)

    # ----------------------------------------------------------------- labels
    def set_labels(
        self,
        image_ids: Sequence[int],
        label_id: int | None,
        source: str = SOURCE_HUMAN,
        who: str | None = None,
        how: str = history.HOW_API,
    ) -> LabelChange:
        """Label (or, with None, unlabel) many images in one transaction; ``how`` goes into
        the label history (``history.HOWS``: keyboard, bulk, review, audit, ...)."""
        with self.transaction() as s:
            if label_id is not None:
                _get_class(s, label_id)
            return _set_labels(s, list(image_ids), label_id, source, who or current_user(), how)

    def set_labels_many(
        self, assignments: Sequence[tuple[int, int | None]], source: str = SOURCE_HUMAN,
        how: str | None = None,
    ) -> LabelChange:
        """Give each image its own label (e.g. accepting many predictions) in one transaction.
        ``how`` defaults to "accepted-prediction" for predictions, else "bulk"."""
        if how is None:
            how = history.HOW_PREDICTION if source == SOURCE_PREDICTION else history.HOW_BULK
        by_label: dict[int | None, list[int]] = defaultdict(list)
        for image_id, label_id in assignments:
            by_label[label_id].append(image_id)
        before: list[tuple[int, LabelState]] = []
        after: list[tuple[int, LabelState]] = []
        with self.transaction() as s:
            for label_id, ids in by_label.items():
                change = _set_labels(s, ids, label_id, source, current_user(), how)
                before.extend(change.before)
                after.extend(change.after)
        return LabelChange(tuple(before), tuple(after))

    def undo_labels(self, change: LabelChange, how: str = history.HOW_UNDO) -> None:
        with self.transaction() as s:
            _apply_states(s, change.before, how)

    def redo_labels(self, change: LabelChange, how: str = history.HOW_REDO) -> None:
        with self.transaction() as s:
            _apply_states(s, change.after, how)

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
                    found[r[0]] = ImageInfo(*r)
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
        return len(gone) + sum(1 for _, _, m in rows if m) - len(back), len(back)


# --------------------------------------------------------------------- helpers
MAX_CLASS_NAME = 200  # characters (the column's size)
# Characters a class name cannot hold: controls (newline, tab, NUL, ...), line/paragraph
# separators and lone surrogates (undecodable file-name bytes).
_BAD_NAME_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})


def class_key(name: str) -> str:
    """What makes two class names the same class: Unicode form and case do not count."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def normalize_class_name(name: str) -> str:
    """A class name as typed (CLI, GUI), checked: NFC, trimmed, 1-200 characters, no
    control characters. Raises ProjectError with the reason otherwise."""
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise ProjectError("A class name cannot be empty.")
    if any(unicodedata.category(ch) in _BAD_NAME_CATEGORIES for ch in name):
        raise ProjectError("A class name cannot contain line breaks, tabs or other control "
                           "characters.")
    if len(name) > MAX_CLASS_NAME:
        raise ProjectError(f"A class name can have at most {MAX_CLASS_NAME} characters "
                           f"(this one has {len(name)}).")
    return name


def class_name_from_folder(folder: str) -> tuple[str | None, str | None]:
    """A class name made from a folder name, and a note when it had to be changed.

    Unlike a typed name, a folder name is fixed rather than refused (the import goes on):
    undecodable bytes become U+FFFD, control characters become spaces, and a name over
    200 characters is truncated.
    """
    text = unicodedata.normalize(
        "NFC", folder.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    bad = any(unicodedata.category(ch) in _BAD_NAME_CATEGORIES for ch in text)
    cleaned = "".join(
        " " if unicodedata.category(ch) in _BAD_NAME_CATEGORIES else ch for ch in text).strip()
    if not cleaned:
        return None, None
    notes = []
    if bad:
        notes.append("control characters replaced by spaces")
    if len(cleaned) > MAX_CLASS_NAME:
        cleaned = cleaned[:MAX_CLASS_NAME].rstrip()
        notes.append(f"truncated to the {MAX_CLASS_NAME}-character limit of class names")
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


def _read_states(s: Session, ids: Sequence[int]) -> dict[int, LabelState]:
    states: dict[int, LabelState] = {}
    for chunk in _chunks(ids):
        rows = s.execute(
            select(
                Image.id, Image.label_id, Image.label_source, Image.labeled_by, Image.labeled_at
            ).where(Image.id.in_(chunk))
        )
        for image_id, *state in rows:
            states[image_id] = LabelState(*state)
    return states


def _set_labels(
    s: Session, ids: list[int], label_id: int | None, source: str, who: str,
    how: str = history.HOW_API,
) -> LabelChange:
    before = _read_states(s, ids)
    now = utcnow()
    new = (
        LabelState(None, None, None, None)
        if label_id is None
        else LabelState(label_id, source, who, now)
    )
    changed = [i for i in ids if i in before and before[i].label_id != label_id]
    change = LabelChange(
        tuple((i, before[i]) for i in changed), tuple((i, new) for i in changed)
    )
    _apply_states(s, change.after)
    history.record(s, [(i, before[i].label_id, label_id) for i in changed], how, who, now)
    return change


def _apply_states(
    s: Session, states: Sequence[tuple[int, LabelState]], how: str | None = None
) -> None:
    """Write these label states; with ``how`` (undo, redo) the changes they make go into
    the label history, in the same transaction."""
    from densestudio.core import splits  # splits imports store's types

    old = history.image_values(s, Image.label_id, [i for i, _ in states]) if how else {}

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
                )
            )
    splits.assign_missing_splits(s, [image_id for image_id, _ in states])
    if how is not None:
        history.record(s, [(i, old[i], st.label_id) for i, st in states
                           if i in old and old[i] != st.label_id], how, current_user())


def _apply_filter(stmt: Select, flt: ImageFilter) -> Select:
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


def _apply_sort(stmt: Select, sort: str, descending: bool) -> Select:
    if sort == "name":
        keys = [Image.filename, Image.id]
    elif sort == "added":
        keys = [Image.added_at, Image.id]
    elif sort == "class":
        position = (
            select(LabelClass.position)
            .where(LabelClass.id == Image.label_id)
            .scalar_subquery()
        )
        keys = [func.coalesce(position, 1_000_000), Image.filename, Image.id]
    else:
        raise ProjectError(f"Unknown sort key '{sort}' (choose from {', '.join(SORT_KEYS)}).")
    return stmt.order_by(*[k.desc() if descending else k for k in keys])


def bulk_insert_images(s: Session, rows: list[dict]) -> None:
    """Insert image rows (dicts of Image columns) in one statement; used by the importer."""
    if rows:
        s.execute(insert(Image), rows)


# Split management lives in splits.py; these wrappers give GUI and CLI one entry point.
def split_settings(project: Project):
    from densestudio.core import splits

    with project.session() as s:
        return splits.read_settings(s)


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
