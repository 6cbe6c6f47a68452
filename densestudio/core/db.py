"""Engine and session factory for a project file: SQLite pragmas, schema version, upgrades.

Every connection gets WAL (readers never block the writer, a crash never corrupts) and
foreign keys on. Write transactions start with ``BEGIN IMMEDIATE``: they take the write lock
before reading, so two processes changing one project (a CLI import while the GUI labels)
queue behind each other instead of failing on a stale snapshot; a writer that waits long
says so, and gives up with a clear message. Engine URLs are built from paths with
SQLAlchemy's URL object, so no file name is ever parsed as a URL.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from densestudio.core.errors import ProjectError
from densestudio.core.models import Base, Meta, Run

SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 30_000  # reads and a writer's own statements wait this long for a lock
LOCK_NOTICE_S = 3.0  # a writer waiting this long for another process says so ...
LOCK_WAIT_S = 120.0  # ... and gives up after this long with a clear message

log = logging.getLogger("densestudio")


def project_target(project: str | os.PathLike) -> Path:
    """The one place that turns a project argument (CLI, GUI, API) into what is opened.

    Today that is always a file: an absolute path (never relative to the working directory
    of a later process), never parsed as a URL, whatever characters its name has.
    """
    text = os.fspath(project)
    if re.match(r"^(sqlite|postgres(ql)?(\+\w+)?)://", text, re.IGNORECASE):
        raise ProjectError(f"'{text}' is a database URL; DenseStudio opens project files "
                           "(name.dsproj) only.")
    return Path(os.path.abspath(Path(text).expanduser()))


def engine_url(path: Path, read_only: bool = False, immutable: bool = False) -> URL:
    """SQLite URL for a file, built from parts: '?', '#' or '%' in a name stay in the name.

    Read-only opening needs SQLite's own URI syntax; ``Path.as_uri`` percent-encodes it.
    ``immutable`` is for a read-only folder, where SQLite cannot create the -shm file.
    """
    if not read_only:
        return URL.create("sqlite", database=str(path))
    query = {"uri": "true", "mode": "ro"} | ({"immutable": "1"} if immutable else {})
    return URL.create("sqlite", database=Path(path).as_uri(), query=query)


def _read_only_uri(path: Path, immutable: bool) -> str:
    return Path(path).as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")


@dataclass
class LockWait:
    """How a writer that finds the project locked by another process behaves."""

    notify: Callable[[str], None] = log.warning
    notice_s: float | None = None  # None: LOCK_NOTICE_S / LOCK_WAIT_S at the time of waiting
    wait_s: float | None = None


@dataclass(frozen=True)
class Database:
    path: Path
    engine: Engine
    sessions: sessionmaker[Session]  # reads (deferred BEGIN)
    writer: sessionmaker[Session]  # writes (BEGIN IMMEDIATE, lock waits reported)
    read_only: str | None = None  # why the project is open read-only, or None
    lock_wait: LockWait = field(default_factory=LockWait)

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(path: Path, read_only: bool = False, immutable: bool = False,
                 lock_wait: LockWait | None = None) -> Engine:
    engine = create_engine(engine_url(path, read_only, immutable))
    lock_wait = lock_wait or LockWait()

    def on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (on_begin)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not read_only:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")  # durable across app crashes in WAL
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA cache_size = -65536")  # 64 MiB page cache
        cursor.close()

    def on_begin(conn) -> None:  # TYPEHINT - sqlalchemy Connection
        if conn.get_execution_options().get("densestudio_write"):
            _begin_immediate(conn, path, lock_wait)
        else:
            conn.exec_driver_sql("BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


def _is_locked(exc: BaseException) -> bool:
    return "locked" in str(getattr(exc, "orig", exc)) or "busy" in str(getattr(exc, "orig", exc))


def _begin_immediate(conn, path: Path, lock_wait: LockWait) -> None:
    """Take the write lock, waiting for another process that holds it: quietly at first,
    then with a notice, and finally with a clear error instead of 'database is locked'."""
    notice = LOCK_NOTICE_S if lock_wait.notice_s is None else lock_wait.notice_s
    limit = LOCK_WAIT_S if lock_wait.wait_s is None else lock_wait.wait_s
    started = time.monotonic()
    try:
        for attempt in range(2):
            budget = notice if attempt == 0 else max(limit - (time.monotonic() - started), 0)
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(budget * 1000)}")
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if not _is_locked(exc):
                    raise
                if attempt == 0:
                    lock_wait.notify(f"waiting for another DenseStudio process that is writing "
                                     f"to this project ({path.name})...")
        raise ProjectError(
            f"{path} stayed locked by another program for {limit:.0f} s, so nothing was "
            "changed. Let the other DenseStudio window or command finish (or close it) and "
            "try again."
        )
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def explain_error(exc: BaseException, path: Path) -> str | None:
    """A user-facing sentence for a storage error (disk full, damaged file, ...), else None."""
    if isinstance(exc, IntegrityError) or not isinstance(exc, (DBAPIError, sqlite3.Error)):
        return None
    text = str(getattr(exc, "orig", exc))
    low = text.lower()
    if "full" in low:
        return (f"The disk is full: cannot save changes to {path}. Free some space and try "
                "again; everything saved before is kept.")
    if "readonly" in low or "read-only" in low:
        return f"{path} is read-only: nothing was changed."
    if "locked" in low or "busy" in low:
        return (f"{path} is locked by another program; let it finish (or close it) and try "
                "again. Nothing was changed.")
    if "malformed" in low or "corrupt" in low:
        return (f"{path} is damaged ({text}). Restore it from a backup (if it was upgraded "
                f"from an older DenseStudio, {path.name}.vN.bak beside it is a copy).")
    if "not a database" in low:
        return f"{path} is not a DenseStudio project, or it is damaged ({text})."
    if "disk i/o" in low:
        return f"A disk error occurred while using {path} ({text}); check the drive."
    if "unable to open" in low:
        return f"Cannot open {path} ({text})."
    return None


def _needs_immutable(exc: BaseException) -> bool:
    """SQLite's answer to a read-only open of a WAL file whose -shm it cannot create."""
    return "unable to open" in str(exc) or "readonly" in str(exc)


def _read_only_reason(path: Path) -> str | None:
    if not os.access(path, os.W_OK):
        return f"{path.name} is not writable"
    if not os.access(path.parent, os.W_OK):
        return f"its folder {path.parent} is not writable"
    return None


def read_schema_version(path: Path) -> int | None:
    """The schema version stored in a project file, or None if it has no meta table."""
    path = Path(os.path.abspath(path))
    row = None
    for immutable in (False, True):  # immutable: a read-only folder without -wal/-shm files
        try:
            con = sqlite3.connect(_read_only_uri(path, immutable), uri=True,
                                  timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise ProjectError(f"Cannot open project file {path}: {exc}") from exc
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            break
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            if _needs_immutable(exc) and not immutable:
                continue
            raise ProjectError(explain_error(exc, path) or f"Cannot read {path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise ProjectError(explain_error(exc, path)
                               or f"{path} is not a DenseStudio project ({exc}).") from exc
        finally:
            con.close()
    if row is None:
        return None
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise ProjectError(f"{path} has an invalid schema version ({row[0]!r}); it was not "
                           "written by DenseStudio or has been edited.") from None


def _database(path: Path, read_only: str | None = None, immutable: bool = False) -> Database:
    lock_wait = LockWait()
    engine = _make_engine(path, read_only is not None, immutable, lock_wait)
    reads = sessionmaker(engine, expire_on_commit=False)
    writes = sessionmaker(engine.execution_options(densestudio_write=True),
                          expire_on_commit=False)
    return Database(path, engine, reads, writes, read_only, lock_wait)


def create_database(path: Path) -> Database:
    path = project_target(path)
    if path.exists() or path.is_symlink():
        raise ProjectError(f"{path} already exists; open it instead of creating it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProjectError(f"Cannot create {path}: {exc.strerror or exc}") from exc
    if not os.access(path.parent, os.W_OK):
        raise ProjectError(f"Cannot create {path}: its folder is not writable.")
    database = _database(path)
    try:
        Base.metadata.create_all(database.engine)
        with database.writer.begin() as session:
            session.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
    except DBAPIError as exc:
        database.dispose()
        raise ProjectError(explain_error(exc, path) or f"Cannot create {path}: {exc}") from exc
    return database


def _add_column(conn, table: str, column: str, ddl: str) -> None:
    names = {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")}
    if column not in names:
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")


def _upgrade_1_to_2(conn, _path: Path) -> None:
    """v2 adds the perceptual hash used by the near-duplicate check (NULL for old rows)
    and a covering index for per-class split counts."""
    _add_column(conn, "image", "phash", "INTEGER")
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_image_label_split ON image (label_id, split)")


def stored_path(path: str | Path, project_path: Path) -> str:
    """How a path (absolute, or relative to the working directory) is kept in the project:
    relative to the project file's folder when inside it (the folder can move, the working
    directory of a later process is anything), absolute otherwise."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path(project_path).parent).as_posix()
    except ValueError:
        return str(absolute)


def resolve_stored_path(text: str, project_path: Path) -> Path:
    """The absolute path for a stored one (see ``stored_path``)."""
    return Path(os.path.abspath(Path(project_path).parent / text))


def _upgrade_2_to_3(conn, path: Path) -> None:
    """v3 stores checkpoint paths relative to the project file. v2 stored them as given,
    which could be relative to the working directory of the process that trained; each is
    looked for beside the project, in the project's -runs folder, then in the current
    folder, and the first that exists is kept; a missing one points at the place training
    writes it (``<project>-runs/<run id>/``), or stays as it was."""
    runs_dir = path.with_name(path.name + "-runs")
    table = Run.__table__
    rows = conn.execute(select(table.c.id, table.c.checkpoint_best, table.c.checkpoint_last))
    for run_id, *values in list(rows):
        fixed = {}
        for column, value in zip(("checkpoint_best", "checkpoint_last"), values, strict=False):
            if not value:
                continue
            old = Path(value)
            candidates = [old] if old.is_absolute() else [
                path.parent / old, runs_dir / str(run_id) / old.name, Path(os.getcwd()) / old]
            standard = runs_dir / str(run_id) / old.name  # where fit() writes them
            found = next((c for c in candidates if c.is_file()),
                         standard if old.parent.name == str(run_id) else candidates[0])
            fixed[column] = stored_path(found, path)
        if fixed:
            conn.execute(table.update().where(table.c.id == run_id).values(**fixed))


# Upgrades from version N to N+1, each a function run inside one transaction.
_UPGRADES: dict[int, Callable[..., None]] = {1: _upgrade_1_to_2, 2: _upgrade_2_to_3}


def open_database(path: Path) -> Database:
    path = project_target(path)
    if path.is_dir():
        raise ProjectError(f"{path} is a folder, not a project file.")
    if not path.is_file():
        raise ProjectError(f"Project file not found: {path}")
    version = read_schema_version(path)
    if version is None:
        raise ProjectError(f"{path} is not a DenseStudio project (no schema version).")
    if version > SCHEMA_VERSION:
        raise ProjectError(
            f"{path} was written by a newer DenseStudio (schema {version}; this version "
            f"understands up to {SCHEMA_VERSION}). Update DenseStudio to open it."
        )
    read_only = _read_only_reason(path)
    if version < SCHEMA_VERSION:
        if read_only:
            raise ProjectError(f"{path} must be upgraded to this DenseStudio's format, but "
                               f"{read_only}. Copy it somewhere writable and open the copy.")
        _upgrade(path, version)
    if read_only is not None:
        return _open_read_only(path, read_only)
    database = _database(path)
    try:
        Base.metadata.create_all(database.engine)  # adds tables introduced since; drops none
    except DBAPIError as exc:
        database.dispose()
        raise ProjectError(explain_error(exc, path) or f"Cannot open {path}: {exc}") from exc
    return database


def _open_read_only(path: Path, reason: str) -> Database:
    """Open without writing anything (no -wal/-shm files where the folder is read-only)."""
    for immutable in (False, True):
        database = _database(path, reason, immutable)
        try:
            with database.sessions() as s:
                s.scalar(select(Meta.value).limit(1))
            return database
        except DBAPIError as exc:
            database.dispose()
            if immutable or not _needs_immutable(exc.orig):
                raise ProjectError(explain_error(exc, path) or f"Cannot open {path}: "
                                   f"{exc.orig}") from exc
    raise AssertionError("unreachable")


def backup_path_for(path: Path, version: int) -> Path:
    return path.with_name(f"{path.name}.v{version}.bak")


def _upgrade(path: Path, version: int) -> None:
    """Copy the file aside, then step the schema up one version at a time."""
    backup = backup_path_for(path, version)
    try:
        src = sqlite3.connect(path)
        try:
            dst = sqlite3.connect(backup)
            with dst:
                src.backup(dst)
            dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise ProjectError(explain_error(exc, path) or f"Cannot back up {path} before "
                           f"upgrading it: {exc}") from exc
    engine = _make_engine(path)
    try:
        Base.metadata.create_all(engine)
        while version < SCHEMA_VERSION:
            step = _UPGRADES.get(version)
            with engine.begin() as conn:
                if step is not None:
                    step(conn, path)
                version += 1
                conn.execute(
                    Meta.__table__.update()
                    .where(Meta.key == "schema_version")
                    .values(value=str(version))
                )
    except DBAPIError as exc:
        raise ProjectError(explain_error(exc, path) or f"Cannot upgrade {path}: {exc}") from exc
    finally:
        engine.dispose()


def get_meta(session: Session, key: str, default: str | None = None) -> str | None:
    value = session.scalar(select(Meta.value).where(Meta.key == key))
    return default if value is None else value


def set_meta(session: Session, key: str, value: str) -> None:
    row = session.get(Meta, key)
    if row is None:
        session.add(Meta(key=key, value=value))
    else:
        row.value = value


__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "LockWait",
    "backup_path_for",
    "create_database",
    "engine_url",
    "explain_error",
    "get_meta",
    "open_database",
    "project_target",
    "resolve_stored_path",
    "set_meta",
    "stored_path",
]
