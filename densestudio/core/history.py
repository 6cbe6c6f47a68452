"""Label history: every label change, append-only and hash-chained, and the import log.

Every path that changes ``Image.label_id`` (store: set_labels / set_labels_many / undo /
redo / class delete and merge; the importer) calls ``record`` in the same transaction as
the change, so a crash keeps both or neither. Each event says who (the OS user unless
``DENSESTUDIO_USER`` or ``--user`` says otherwise), when, the old and new class (id and
name: names survive a class being renamed or deleted) and how (``HOWS``).

``image_history`` is what the viewer shows; ``verify_history`` finds rows edited, deleted or
moved behind the app's back (see core/hashchain.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from densestudio.core import hashchain
from densestudio.core.errors import ProjectError
from densestudio.core.models import Image, ImportLog, LabelClass, LabelEvent, utcnow
from densestudio.core.records import ImageInfo
from densestudio.core.sessions import Sessions
from densestudio.core.users import current_user

# How a label changed.
HOW_KEYBOARD = "keyboard"  # 1-9 / 0 on one image in the gallery or viewer
HOW_BULK = "bulk"  # one class for a selection of several images
HOW_REVIEW = "review"  # relabeled from the Review tab's results
HOW_PREDICTION = "accepted-prediction"  # a model prediction accepted as the label
HOW_AUDIT = "audit"  # relabeled in the label audit
HOW_AUDIT_CONFIRM = "audit-confirm"  # "label is right" in the label audit (no change)
HOW_AUDIT_UNCONFIRM = "audit-unconfirm"  # that confirmation undone
HOW_IMPORT = "import"  # sub-folder name at import
HOW_CSV = "import-labels"  # a CSV file (densestudio import-labels: a line's MES, a script)
HOW_UNDO = "undo"
HOW_REDO = "redo"
HOW_CLASS_DELETE = "class-delete"  # the class was deleted: its images became unlabeled
HOW_CLASS_MERGE = "class-merge"  # the class was merged into another
HOW_API = "api"  # a script or the command line through the store
HOWS = (HOW_KEYBOARD, HOW_BULK, HOW_REVIEW, HOW_PREDICTION, HOW_AUDIT, HOW_AUDIT_CONFIRM,
        HOW_AUDIT_UNCONFIRM, HOW_IMPORT, HOW_CSV, HOW_UNDO, HOW_REDO, HOW_CLASS_DELETE,
        HOW_CLASS_MERGE, HOW_API)

LABEL_CHAIN = hashchain.Chain(
    "label history", LabelEvent,
    ("id", "image_id", "image_hash", "at", "who", "old_class_id", "old_class", "new_class_id",
     "new_class", "how"),
)


@dataclass(frozen=True)
class LabelEventInfo:
    """One label change as a value (``models.LabelEvent`` is its row)."""

    id: int
    image_id: int
    image_hash: str
    at: datetime
    who: str
    old_class: str | None  # None: unlabeled
    new_class: str | None
    how: str
    old_class_id: int | None = None
    new_class_id: int | None = None

    def describe(self) -> str:
        old = self.old_class or "(unlabeled)"
        new = self.new_class or "(unlabeled)"
        change = f"{old} -> {new}" if old != new else f"{new} (unchanged)"
        return f"{self.at:%Y-%m-%d %H:%M:%S}  {self.who:<12} {self.how:<19} {change}"


@dataclass(frozen=True)
class ImportSource:
    id: int
    at: datetime
    who: str
    sources: tuple[str, ...]
    labels_from_subfolders: bool
    added: int
    duplicates: int
    already_in_project: int
    skipped: int
    cancelled: bool


# ------------------------------------------------------------------ writing
SCAN_ABOVE = 20_000  # ids: above this, one scan of the table beats chunked IN (...) queries


def image_values(
    s: Session, column: InstrumentedAttribute[Any], ids: Sequence[int]
) -> dict[int, Any]:
    """``{image id: column value}`` for these images (a full scan when there are many)."""
    if len(ids) > SCAN_ABOVE:
        wanted = set(ids)
        return {i: v for i, v in s.execute(select(Image.id, column)) if i in wanted}
    out: dict[int, Any] = {}
    ids = list(ids)
    for start in range(0, len(ids), 5000):
        out.update(iter(s.execute(select(Image.id, column).where(
            Image.id.in_(ids[start : start + 5000])))))
    return out


def record(
    s: Session,
    changes: Sequence[tuple[int, int | None, int | None]],
    how: str,
    who: str,
    at: datetime | None = None,
) -> None:
    """Append one event per ``(image_id, old_class_id, new_class_id)``, in the caller's
    transaction, after the change itself was written (that holds SQLite's write lock, so
    the chain cannot fork between two processes)."""
    if not changes:
        return
    at = at or utcnow()
    names = dict(iter(s.execute(select(LabelClass.id, LabelClass.name))))
    hashes = image_values(s, Image.content_hash, sorted({i for i, _, _ in changes}))
    rows = [
        {"image_id": int(i), "image_hash": hashes.get(i, ""), "at": at, "who": who[:64],
         "old_class_id": old, "old_class": names.get(old) if old is not None else None,
         "new_class_id": new, "new_class": names.get(new) if new is not None else None,
         "how": how}
        for i, old, new in changes
    ]  # fmt: skip
    hashchain.append(s, LABEL_CHAIN, rows)


def record_confirmations(project: Sessions, image_ids: Sequence[int], confirmed: bool,
                         who: str | None = None) -> None:
    """The label audit's "label is right" (or its undo) as events that keep the label."""
    how = HOW_AUDIT_CONFIRM if confirmed else HOW_AUDIT_UNCONFIRM
    ids = sorted({int(i) for i in image_ids})
    with project.transaction() as s:
        labels: dict[int, int | None] = {}
        for start in range(0, len(ids), 5000):
            labels.update(iter(s.execute(select(Image.id, Image.label_id)
                                         .where(Image.id.in_(ids[start : start + 5000])))))
        record(s, [(i, labels[i], labels[i]) for i in ids if i in labels], how,
               who or current_user())


def record_imported(s: Session, rows: Sequence[dict[str, Any]], who: str, at: datetime | None = None
                    ) -> None:
    """History for images just inserted with a label by the importer (``rows`` are the
    inserted column dicts)."""
    labeled = {r["content_hash"]: r["label_id"] for r in rows if r.get("label_id") is not None}
    if not labeled:
        return
    found: list[tuple[int, int | None, int | None]] = []
    digests = sorted(labeled)
    for start in range(0, len(digests), 5000):
        chunk = digests[start : start + 5000]
        for image_id, digest in s.execute(
                select(Image.id, Image.content_hash).where(Image.content_hash.in_(chunk))):
            found.append((image_id, None, labeled[digest]))
    record(s, sorted(found), HOW_IMPORT, who, at)


# ------------------------------------------------------------------ reading
def _info(r: LabelEvent) -> LabelEventInfo:
    return LabelEventInfo(r.id, r.image_id, r.image_hash, r.at, r.who, r.old_class, r.new_class,
                          r.how, r.old_class_id, r.new_class_id)


def image_history(project: Sessions, image_id: int) -> list[LabelEventInfo]:
    """Every label event of one image, oldest first (the viewer's history panel)."""
    with project.session() as s:
        rows = s.scalars(select(LabelEvent).where(LabelEvent.image_id == image_id)
                         .order_by(LabelEvent.id))
        return [_info(r) for r in rows]


def all_history(project: Sessions, limit: int | None = None,
                newest_first: bool = False) -> list[LabelEventInfo]:
    with project.session() as s:
        stmt = select(LabelEvent).order_by(
            LabelEvent.id.desc() if newest_first else LabelEvent.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_info(r) for r in s.scalars(stmt)]


def history_count(project: Sessions) -> int:
    with project.session() as s:
        return s.scalar(select(func.count(LabelEvent.id))) or 0


def history_summary(project: Sessions) -> dict[str, int]:
    """Events per ``how`` (for the report)."""
    with project.session() as s:
        return dict(iter(s.execute(select(LabelEvent.how, func.count()).group_by(LabelEvent.how))))


def head_hash(project: Sessions) -> str:
    """The newest label event's hash (GENESIS when there is none)."""
    with project.session() as s:
        return hashchain.tail(s, LABEL_CHAIN)[1]


def verify_history(project: Sessions) -> hashchain.ChainStatus:
    with project.session() as s:
        return hashchain.verify(s, LABEL_CHAIN)


def import_sources(project: Sessions) -> list[ImportSource]:
    with project.session() as s:
        rows = s.scalars(select(ImportLog).order_by(ImportLog.id))
        return [ImportSource(r.id, r.at, r.who, tuple(json.loads(r.sources_json or "[]")),
                             bool(r.labels_from_subfolders), r.added, r.duplicates,
                             r.already_in_project, r.skipped, bool(r.cancelled)) for r in rows]


class _Images(Sessions, Protocol):
    def image(self, image_id: int) -> ImageInfo: ...


def find_image(project: _Images, ref: str | int) -> ImageInfo:
    """An image by id, full path or file name (a file name must be unique)."""
    text = str(ref).strip()
    with project.session() as s:
        image_id = None
        if text.isdigit():
            image_id = s.scalar(select(Image.id).where(Image.id == int(text)))
        if image_id is None:
            image_id = s.scalar(select(Image.id).where(
                Image.path.in_([text, str(Path(text).expanduser().absolute())])))
        if image_id is None:
            ids = list(s.scalars(select(Image.id).where(
                Image.filename == Path(text).name.lower()).limit(5)))
            if len(ids) > 1:
                raise ProjectError(f"More than one image is called '{Path(text).name}'; "
                                   "give its id or full path.")
            image_id = ids[0] if ids else None
    if image_id is None:
        raise ProjectError(f"No image '{text}' in this project (give an id, path or file name).")
    return project.image(image_id)
