"""ORM tables of a project (SQLAlchemy 2.0 typed declarative models).

A project is one SQLite file, or one PostgreSQL database for a team (the same tables).
Labels live on the image row (one label per image) so the gallery's hot query needs no
join; runs, their per-epoch metrics, the label snapshot a run trained on and its per-image
predictions are rows too, so a crash leaves nothing half-known.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, cast
from urllib.parse import quote_from_bytes, unquote_to_bytes

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from densestudio.core.machine import root_map

# Text that sorts by code point on both databases (SQLite's default; PostgreSQL's "C"), so a
# gallery sorted by name shows the same order on either.
SortedText = Text().with_variant(Text(collation="C"), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


_BYTES_PREFIX = "bytes:"  # never starts a stored path: those are absolute or project-relative


def encode_path(path: str) -> str:
    """A file path as storable text, losslessly.

    File names need not be UTF-8 (Linux gives their undecodable bytes to Python as lone
    surrogates), but SQLite text must be. Such a path is stored percent-encoded behind
    ``bytes:``; every other path is stored as it is.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return _BYTES_PREFIX + quote_from_bytes(path.encode("utf-8", "surrogateescape"), "/")
    return path


def decode_path(text: str) -> str:
    if text.startswith(_BYTES_PREFIX):
        return unquote_to_bytes(text[len(_BYTES_PREFIX):]).decode("utf-8", "surrogateescape")
    return text


def path_text(path: str) -> str:
    """A path as plain text for display, sorting and filters (undecodable bytes -> U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class FsPath(TypeDecorator[str]):
    """A Text column holding a file path that may contain undecodable bytes.

    Paths are stored as the machine that wrote them sees them, and read through this
    machine's root mapping (``machine.RootMap``), so a share mounted elsewhere still works.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(
            Text(collation="C") if dialect.name == "postgresql" else Text())

    def process_bind_param(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else encode_path(root_map().to_stored(str(value)))

    def process_result_value(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else root_map().to_local(decode_path(value))


class Base(DeclarativeBase):
    pass


def table_of(model: type[Base]) -> Table:
    """A mapped class's Core table (SQLAlchemy types ``__table__`` as a plain FromClause;
    every class here is mapped to a Table)."""
    return cast(Table, model.__table__)


class Meta(Base):
    """Key/value settings stored in the project (schema version, split seed, ...)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LabelClass(Base):
    __tablename__ = "label_class"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    color: Mapped[str] = mapped_column(String(9))  # "#rrggbb"
    position: Mapped[int] = mapped_column(Integer, default=0)
    shortcut: Mapped[str | None] = mapped_column(String(8), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Image(Base):
    __tablename__ = "image"
    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)  # absolute
    # lower-cased path_text(base name): filter/sort
    filename: Mapped[str] = mapped_column(SortedText)
    # files.natural_key(filename): the name sort (crazing_2 before crazing_10)
    name_key: Mapped[str] = mapped_column(SortedText, default="", server_default="")
    folder: Mapped[str] = mapped_column(FsPath, default="")  # parent folder (group key)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    byte_size: Mapped[int] = mapped_column(BigInteger)
    # The file's modification time (ns) when its content was last hashed; with byte_size it
    # tells cheaply whether the file may have changed since (None: not known, hash it).
    file_mtime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(16))  # Pillow mode after import ("L", "RGB", "I;16")
    bit_depth: Mapped[int] = mapped_column(Integer, default=8)
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    missing: Mapped[bool] = mapped_column(Boolean, default=False)
    # 64-bit difference hash (signed for SQLite) for near-duplicate checks; None if unknown.
    phash: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    label_id: Mapped[int | None] = mapped_column(
        ForeignKey("label_class.id", ondelete="SET NULL"), nullable=True
    )
    label_source: Mapped[str | None] = mapped_column(String(16), nullable=True)
    labeled_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    labeled_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    split: Mapped[str | None] = mapped_column(String(5), nullable=True)
    # Compare-and-set for labelers working at once: +1 on every label change; a change made
    # from a view that saw an older version is refused for that image (store.Seen).
    label_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Number of the project change (meta 'change_seq') that last touched this row: label,
    # split, file or the row itself; what other clients' change feeds look for.
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Number of the change that last changed its label (what Seen.seq is checked against:
    # a split, a file check or the import of the row itself is no conflict).
    label_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    label: Mapped[LabelClass | None] = relationship(lazy="raise")

    __table_args__ = (
        Index("ix_image_label_name_key", "label_id", "name_key"),
        Index("ix_image_label_split", "label_id", "split"),  # covering index for counts
        Index("ix_image_split_name_key", "split", "name_key"),
        Index("ix_image_name_key", "name_key"),
        Index("ix_image_added", "added_at"),
        Index("ix_image_change_seq", "change_seq"),
    )


class Run(Base):
    """One training run: its config, status, checkpoints and summary metrics."""

    __tablename__ = "run"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # created | running | finished | cancelled | failed
    status: Mapped[str] = mapped_column(String(16), default="created")
    config_json: Mapped[str] = mapped_column(Text, default="{}")
    class_names_json: Mapped[str] = mapped_column(Text, default="[]")
    metrics_json: Mapped[str] = mapped_column(Text, default="{}")
    best_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    best_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    # Relative to the project file's folder when inside it, else absolute (see runs.py).
    checkpoint_best: Mapped[str | None] = mapped_column(FsPath, nullable=True)
    checkpoint_last: Mapped[str | None] = mapped_column(FsPath, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    device: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Extra run-scoped settings (e.g. OK/NG operating point) as JSON.
    extra_json: Mapped[str] = mapped_column(Text, default="{}")


class RunImage(Base):
    """The label/split snapshot a run was trained and evaluated on."""

    __tablename__ = "run_image"
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    class_index: Mapped[int] = mapped_column(Integer)  # index into the run's class names
    split: Mapped[str] = mapped_column(String(5))


class EpochMetric(Base):
    __tablename__ = "epoch_metric"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_macro_f1: Mapped[float | None] = mapped_column(Float, nullable=True)
    lr: Mapped[float] = mapped_column(Float)
    images_per_s: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    __table_args__ = (UniqueConstraint("run_id", "epoch"),)


class Prediction(Base):
    """A run's prediction for one image (val/test after training, or unlabeled on request)."""

    __tablename__ = "prediction"
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    subset: Mapped[str] = mapped_column(String(10))  # train | val | test | unlabeled
    true_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pred_index: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    probs: Mapped[bytes] = mapped_column(LargeBinary)  # float32 array, len(class names)
    __table_args__ = (
        Index("ix_prediction_run_subset", "run_id", "subset", "true_index", "pred_index"),
    )


# ---------------------------------------------------------------------------- sign-off
# Append-only records (core/history.py, core/signoff.py). No foreign keys to image/run on
# the chained tables: they must outlive the rows they talk about, and a cascade must never
# delete history. Each chained row stores the SHA-256 of its content and of the row before.


class LabelEvent(Base):
    """One label change of one image: who, when, old and new class, and how."""

    __tablename__ = "label_event"
    id: Mapped[int] = mapped_column(primary_key=True)  # chain order
    image_id: Mapped[int] = mapped_column(Integer, index=True)
    image_hash: Mapped[str] = mapped_column(String(64))  # content hash: the image itself
    at: Mapped[datetime] = mapped_column(DateTime)
    who: Mapped[str] = mapped_column(String(64))
    old_class_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    old_class: Mapped[str | None] = mapped_column(String(200), nullable=True)
    new_class_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_class: Mapped[str | None] = mapped_column(String(200), nullable=True)
    how: Mapped[str] = mapped_column(String(32))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Approval(Base):
    """A run signed off for release: who, when, why, on which data, with which metrics."""

    __tablename__ = "approval"
    id: Mapped[int] = mapped_column(primary_key=True)  # chain order
    run_id: Mapped[int] = mapped_column(Integer, index=True)
    run_name: Mapped[str] = mapped_column(String(200), default="")
    approved_by: Mapped[str] = mapped_column(String(64))
    approved_at: Mapped[datetime] = mapped_column(DateTime)
    why: Mapped[str] = mapped_column(Text)
    data_fingerprint: Mapped[str] = mapped_column(String(64), default="")
    class_names_json: Mapped[str] = mapped_column(Text, default="[]")
    metrics_json: Mapped[str] = mapped_column(Text, default="{}")
    label_head: Mapped[str] = mapped_column(String(64))  # label history's newest hash then
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class GoldenImage(Base):
    """A must-pass image: the release gate fails when a candidate model gets it wrong."""

    __tablename__ = "golden_image"
    image_id: Mapped[int] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")


class ImportLog(Base):
    """One import: which folders or files, by whom, when, with which result (report's
    "import sources")."""

    __tablename__ = "import_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    who: Mapped[str] = mapped_column(String(64))
    sources_json: Mapped[str] = mapped_column(Text)  # list of absolute paths
    labels_from_subfolders: Mapped[bool] = mapped_column(Boolean, default=False)
    added: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    already_in_project: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
