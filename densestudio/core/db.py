"""Engine and session factory for a project: a SQLite file or a PostgreSQL database.

SQLite: every connection gets WAL (readers never block the writer, a crash never corrupts)
and foreign keys on. Write transactions start with ``BEGIN IMMEDIATE``: they take the write
lock before reading, so two processes changing one project (a CLI import while the GUI
labels) queue behind each other instead of failing on a stale snapshot; a writer that waits
long says so, and gives up with a clear message. Engine URLs are built from paths with
SQLAlchemy's URL object, so no file name is ever parsed as a URL.

PostgreSQL (a shared project, psycopg 3): the same store code, under PostgreSQL's own
semantics. Reads are READ COMMITTED transactions; a write transaction first takes a
transaction-level advisory lock of the project (the counterpart of BEGIN IMMEDIATE), so the
store's read-then-write steps (compare-and-set of labels, class positions, split counts)
never interleave and never fail with a serialization error. Schema creation and upgrades are
transactional there. A server that cannot be reached becomes ``ServerUnreachable``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, bindparam, create_engine, event, insert, inspect, select, update
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from densestudio.core.errors import ProjectError, ServerUnreachable
from densestudio.core.files import not_found_message
from densestudio.core.models import Base, Image, Meta, Run, table_of

SCHEMA_VERSION = 6
BUSY_TIMEOUT_MS = 30_000  # reads and a writer's own statements wait this long for a lock
LOCK_NOTICE_S = 3.0  # a writer waiting this long for another process says so ...
LOCK_WAIT_S = 120.0  # ... and gives up after this long with a clear message
CONNECT_TIMEOUT_S = 5  # a server that does not answer within this is "unreachable"
# The advisory lock every write transaction of a shared project takes (one per database).
PROJECT_LOCK_KEY = 0x44_53_57_52_49_54_45  # "DSWRITE"

log = logging.getLogger("densestudio")

# "scheme://": a database URL, never a file name (a file really named so is "./postgresql:/...").
# Two letters at least, so that a Windows drive ("C://x") stays a path.
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_SERVER_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgres+psycopg")


@dataclass(frozen=True)
class ServerURL:
    """A shared project: the URL of a PostgreSQL database (psycopg 3 driver).

    The password (if the URL has one) is used to connect and never shown: ``display`` and
    ``key`` leave it out. Without one, libpq reads PGPASSWORD or ~/.pgpass.
    """

    url: URL

    @classmethod
    def parse(cls, text: str) -> ServerURL:
        try:
            url = make_url(text)
        except (ArgumentError, ValueError) as exc:
            raise ProjectError(f"'{_hide_password(text)}' is not a valid database URL "
                               f"({exc}).") from None
        if not url.database:
            raise ProjectError(f"'{_hide_password(text)}' names no database: write "
                               "postgresql://USER@HOST/DATABASE.")
        return cls(url.set(drivername="postgresql+psycopg"))

    @property
    def display(self) -> str:
        """The URL as shown to people and kept in recent-project lists: no password."""
        url = self.url
        return URL.create("postgresql", url.username, None, url.host, url.port, url.database,
                          url.query).render_as_string()

    @property
    def name(self) -> str:
        return self.url.database or "project"

    @property
    def key(self) -> str:
        """A short stable id of this database for per-machine folders (no password in it)."""
        return hashlib.sha256(self.display.encode()).hexdigest()[:16]

    def __str__(self) -> str:
        return self.display


Target = Path | ServerURL


def _hide_password(text: str) -> str:
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", text)


def project_target(project: str | os.PathLike[str] | ServerURL) -> Target:
    """The one place that turns a project argument (CLI, GUI, API) into what is opened.

    A ``Path`` (any ``os.PathLike``) is always a file. Text is a database URL only when it
    starts with ``postgresql://`` or ``postgres://`` (``+psycopg`` allowed); other URL
    schemes are refused rather than taken for folders. A file is made absolute (never
    relative to the working directory of a later process), whatever characters its name has.
    """
    if isinstance(project, ServerURL):
        return project
    if not os.fspath(project).strip():
        raise ProjectError("No project given: name a project file (e.g. line3.dsproj).")
    if isinstance(project, str):
        match = _URL_SCHEME.match(project)
        if match and match.group(1).lower() in _SERVER_SCHEMES:
            return ServerURL.parse(project)
        if match:
            scheme = match.group(1)
            hint = (" Give the project file's path instead." if scheme.lower() == "sqlite"
                    else " Shared projects use postgresql://USER@HOST/DATABASE.")
            raise ProjectError(f"'{_hide_password(project)}' is a database URL that "
                               f"DenseStudio cannot open ({scheme}).{hint} A file whose name "
                               "starts like a URL can be given as ./NAME.")
    return Path(os.path.abspath(Path(os.fspath(project)).expanduser()))


def describe(target: Target) -> str:
    return target.display if isinstance(target, ServerURL) else str(target)


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
    target: Target  # the project file (absolute) or the server URL
    engine: Engine
    sessions: sessionmaker[Session]  # reads (deferred BEGIN)
    writer: sessionmaker[Session]  # writes (project write lock first, lock waits reported)
    read_only: str | None = None  # why the project is open read-only, or None
    lock_wait: LockWait = field(default_factory=LockWait)

    @property
    def is_server(self) -> bool:
        return isinstance(self.target, ServerURL)

    @property
    def path(self) -> Path:
        """The project file; a shared project has none (see ``target``)."""
        if isinstance(self.target, ServerURL):
            raise ProjectError(f"{self.target.display} is a shared project on a database "
                               "server; it has no project file.")
        return self.target

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

    def on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("densestudio_write"):
            _begin_immediate(conn, path, lock_wait)
        else:
            conn.exec_driver_sql("BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


def _is_locked(exc: BaseException) -> bool:
    return "locked" in str(getattr(exc, "orig", exc)) or "busy" in str(getattr(exc, "orig", exc))


def _begin_immediate(conn: Connection, path: Path, lock_wait: LockWait) -> None:
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


def storage_error(exc: BaseException, target: Target) -> ProjectError | None:
    """A user-facing error for a storage failure (disk full, damaged file, server gone, ...),
    else None (a bug, which should surface as one)."""
    if isinstance(target, ServerURL):
        return _server_error(exc, target)
    message = _file_error(exc, target)
    return None if message is None else ProjectError(message)


def explain_error(exc: BaseException, target: Target) -> str | None:
    """The sentence of ``storage_error``, or None."""
    error = storage_error(exc, target)
    return None if error is None else str(error)


def _file_error(exc: BaseException, path: Path) -> str | None:
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


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", exc), "sqlstate", None)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # libpq: 'connection to server at "h" (1.2.3.4), port 5432 failed: Connection refused'
    return (lines[0] if lines else type(exc).__name__).removeprefix("FATAL:  ").strip()


def is_disconnect(exc: BaseException) -> bool:
    """The server is gone or cannot be reached (as opposed to refusing what was asked)."""
    if getattr(exc, "connection_invalidated", False):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    state = _sqlstate(exc)
    if state:  # 08xxx connection exception, 57P0x the server shut down or is starting
        return state.startswith(("08", "57P"))
    return isinstance(exc, OperationalError) and not _is_auth_or_missing(exc)


def _is_auth_or_missing(exc: BaseException) -> bool:
    low = str(getattr(exc, "orig", exc)).lower()
    return any(word in low for word in ("password", "authentication", "does not exist",
                                        "no pg_hba.conf entry", "permission denied"))


def _server_error(exc: BaseException, url: ServerURL) -> ProjectError | None:
    if isinstance(exc, IntegrityError) or not isinstance(exc, DBAPIError):
        return None
    where = url.display
    state = _sqlstate(exc)
    low = str(getattr(exc, "orig", exc)).lower()
    if is_disconnect(exc):
        return ServerUnreachable(
            f"cannot reach the database server of {where} ({_first_line(exc)}). Check the "
            "network and that the server is running; nothing was changed.")
    if state in ("28P01", "28000") or "password" in low or "authentication" in low:
        return ProjectError(
            f"The database server refused the login for {where} ({_first_line(exc)}). Give "
            "the password in the URL, in PGPASSWORD or in ~/.pgpass.")
    if state == "3D000" or ("database" in low and "does not exist" in low):
        return ProjectError(
            f"The database of {where} does not exist on the server. Ask its administrator to "
            f"create it (createdb {url.name}), then create the project with "
            f"`densestudio new {where}`.")
    if state == "42501" or "permission denied" in low:
        return ProjectError(f"{where}: the database user may not do this "
                            f"({_first_line(exc)}); nothing was changed.")
    if state == "53100" or "no space left" in low:
        return ProjectError(f"The database server of {where} has run out of disk space; "
                            "nothing was changed.")
    if state == "25006":
        return ProjectError(f"{where} is read-only on the server (a standby?); nothing was "
                            "changed.")
    return None


def _needs_immutable(exc: BaseException | None) -> bool:
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


def create_database(target: Target) -> Database:
    target = project_target(target)
    if isinstance(target, ServerURL):
        return _create_server_database(target)
    path = target
    _check_name_length(path)
    if path.exists() or path.is_symlink():
        raise ProjectError(f"{path} already exists; open it instead of creating it.")
    blocking = next((p for p in path.parents if p.exists() or p.is_symlink()), None)
    if blocking is not None and not blocking.is_dir():
        raise ProjectError(f"Cannot create {path}: {blocking} is a file, not a folder.")
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


# The longest names made from a project file's name: its side files and folders.
SIDE_SUFFIXES = ("-journal", "-cache", "-runs", "-wal", "-shm", f".v{SCHEMA_VERSION}.bak")


def _check_name_length(path: Path) -> None:
    """Refuse a project name the file system cannot hold with its side files (a -wal that
    cannot be created left a 0-byte project behind), before anything is written."""
    folder = next((p for p in path.parents if p.is_dir()), path.parent)
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        limit = 255
    longest = max(len(os.fsencode(path.name + s)) for s in SIDE_SUFFIXES)
    if longest > limit:
        room = limit - (longest - len(os.fsencode(path.name)))
        raise ProjectError(f"Cannot create {path.name[:40]}...: the name is too long for this "
                           f"file system (a project file name can have at most {room} bytes "
                           f"here, this one has {len(os.fsencode(path.name))}).")


# ------------------------------------------------------------------ schema upgrades
def _add_column(conn: Connection, table: str, column: str, ddl: str) -> None:
    """ALTER TABLE ... ADD COLUMN unless the column exists (either database)."""
    if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")


def _upgrade_1_to_2(conn: Connection, _target: Target) -> None:
    """v2 adds the perceptual hash used by the near-duplicate check (NULL for old rows)
    and a covering index for per-class split counts."""
    _add_column(conn, "image", "phash", "BIGINT")
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_image_label_split ON image (label_id, split)")


def stored_path(path: str | Path, root: Path) -> str:
    """How a path (absolute, or relative to the working directory) is kept in the project:
    relative to the project's files root (the project file's folder; a shared project's
    files root) when inside it - that folder can move, the working directory of a later
    process is anything - absolute otherwise."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return str(absolute)


def resolve_stored_path(text: str, root: Path) -> Path:
    """The absolute path for a stored one (see ``stored_path``)."""
    return Path(os.path.abspath(root / text))


def _upgrade_2_to_3(conn: Connection, target: Target) -> None:
    """v3 stores checkpoint paths relative to the project file. v2 stored them as given,
    which could be relative to the working directory of the process that trained; each is
    looked for beside the project, in the project's -runs folder, then in the current
    folder, and the first that exists is kept; a missing one points at the place training
    writes it (``<project>-runs/<run id>/``), or stays as it was. (No shared project is
    older than v4, so this step only ever meets files.)"""
    if isinstance(target, ServerURL):
        return
    path = target
    runs_dir = path.with_name(path.name + "-runs")
    table = table_of(Run)
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
            fixed[column] = stored_path(found, path.parent)
        if fixed:
            conn.execute(table.update().where(table.c.id == run_id).values(**fixed))


def _upgrade_3_to_4(conn: Connection, _target: Target) -> None:
    """v4 is the schema for several labelers at once: a label version per image for
    compare-and-set, the number of the change that last touched each row (for the change
    feed) and of the one that last changed its label (existing rows: all 0)."""
    _add_column(conn, "image", "label_version", "INTEGER NOT NULL DEFAULT 0")
    _add_column(conn, "image", "change_seq", "BIGINT NOT NULL DEFAULT 0")
    _add_column(conn, "image", "label_seq", "BIGINT NOT NULL DEFAULT 0")
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_image_change_seq ON image (change_seq)")


def _upgrade_4_to_5(conn: Connection, _target: Target) -> None:
    """v5 sorts names naturally (crazing_2 before crazing_10): a sort-key column filled
    from each file name, and the name indexes moved onto it."""
    from densestudio.core.files import natural_key

    collate = ' COLLATE "C"' if conn.dialect.name == "postgresql" else ""  # as SortedText
    _add_column(conn, "image", "name_key", f"TEXT{collate} NOT NULL DEFAULT ''")
    table = table_of(Image)
    rows = list(conn.execute(select(table.c.id, table.c.filename)))
    for start in range(0, len(rows), 5000):
        conn.execute(update(table).where(table.c.id == bindparam("row_id"))
                     .values(name_key=bindparam("key")),
                     [{"row_id": i, "key": natural_key(f)} for i, f in rows[start:start + 5000]])
    for old in ("ix_image_label_filename", "ix_image_split_filename", "ix_image_filename"):
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {old}")
    for name, columns in (("ix_image_label_name_key", "label_id, name_key"),
                          ("ix_image_split_name_key", "split, name_key"),
                          ("ix_image_name_key", "name_key")):
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON image ({columns})")


def _upgrade_5_to_6(conn: Connection, _target: Target) -> None:
    """v6 records each file's modification time when it was hashed, so training can tell
    a file changed since import (old rows: NULL, hashed again on their first check)."""
    _add_column(conn, "image", "file_mtime_ns", "BIGINT")


# Upgrades from version N to N+1, each a function (connection, target) run inside one
# transaction; each works on SQLite and PostgreSQL alike.
_UPGRADES: dict[int, Callable[..., None]] = {
    1: _upgrade_1_to_2, 2: _upgrade_2_to_3, 3: _upgrade_3_to_4, 4: _upgrade_4_to_5,
    5: _upgrade_5_to_6}


def _step_up(conn: Connection, target: Target, version: int) -> None:
    """Run the upgrade steps from ``version`` to SCHEMA_VERSION on one connection."""
    Base.metadata.create_all(conn)
    while version < SCHEMA_VERSION:
        step = _UPGRADES.get(version)
        if step is not None:
            step(conn, target)
        version += 1
        conn.execute(update(Meta).where(Meta.key == "schema_version")
                     .values(value=str(version)))


def _check_version(version: int | None, where: str) -> int:
    if version is None:
        raise ProjectError(f"{where} is not a DenseStudio project (no schema version).")
    if version > SCHEMA_VERSION:
        raise ProjectError(
            f"{where} was written by a newer DenseStudio (schema {version}; this version "
            f"understands up to {SCHEMA_VERSION}). Update DenseStudio to open it."
        )
    return version


def open_database(target: Target) -> Database:
    target = project_target(target)
    if isinstance(target, ServerURL):
        return _open_server_database(target)
    path = target
    if path.is_dir():
        raise ProjectError(f"{path} is a folder, not a project file.")
    if not path.is_file():
        raise ProjectError(not_found_message(path, "Project file"))
    set_aside_foreign_wal(path)  # before SQLite could replay it
    version = _check_version(read_schema_version(path), str(path))
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


# ------------------------------------------------------------------ a -wal from elsewhere
def set_aside_foreign_wal(path: Path) -> Path | None:
    """Move aside a -wal file that does not belong to ``path``, before SQLite replays it.

    A project restored from a backup (or copied) next to an old ``-wal`` left by a crash
    would get that log's pages replayed into it and be left "malformed". Suspicious is a
    -wal that the main file was written after; if no process has the project open, a
    trial replay on copies decides: it is moved aside (``-wal.stale-<time>``, with a
    warning) only when the main file alone is sound and with the log it is not. Returns
    where it went, or None. (Linux: which processes have it open is known there.)"""
    wal, shm = (path.with_name(path.name + side) for side in ("-wal", "-shm"))
    try:
        wal_st, main_st = os.stat(wal), os.stat(path)
    except OSError:
        return None
    if (wal_st.st_size < 32 or main_st.st_mtime_ns <= wal_st.st_mtime_ns
            or not os.path.isdir("/proc/self/fd") or _in_use(path, wal, shm)):
        return None
    if _sound(path, wal) or not _sound(path, None):
        return None  # it belongs (or the main file itself is damaged: the usual message)
    aside = wal.with_name(f"{wal.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(wal, aside)
    shm.unlink(missing_ok=True)
    log.warning(f"{wal.name} does not belong to {path.name} (the project file was replaced "
                f"after it was written, e.g. restored from a backup); it was not replayed "
                f"and was moved aside to {aside.name}.")
    return aside


def _in_use(path: Path, wal: Path, shm: Path) -> bool:
    """True if this or another process has the project open (its -shm locked)."""
    mine = {os.path.realpath(p) for p in (path, wal, shm)}
    for entry in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{entry}") in mine:
                return True
    if not shm.exists():
        return False  # SQLite always has one while a WAL database is open
    try:
        import fcntl

        fd = os.open(shm, os.O_RDWR)
    except (ImportError, OSError):
        return True  # cannot tell: leave it alone
    try:  # SQLite's "DMS" byte: every connection holds a shared lock on it
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 128)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _sound(path: Path, wal: Path | None) -> bool:
    """Whether copies of the project file (and ``wal``) pass SQLite's quick check."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="densestudio-wal-") as tmp:
        copy = Path(tmp) / "p.db"
        shutil.copyfile(path, copy)
        if wal is not None:
            shutil.copyfile(wal, Path(tmp) / "p.db-wal")
        try:
            con = sqlite3.connect(copy)
            try:
                return bool(con.execute("PRAGMA quick_check").fetchone()[0] == "ok")
            finally:
                con.close()
        except sqlite3.DatabaseError:
            return False


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


def sqlite_backup(path: Path, dest: Path) -> None:
    """A consistent copy of a project file through SQLite's backup API: it includes the
    changes still in the -wal file (a plain copy of the .dsproj alone may miss them) and
    waits for, never interrupts, a writer."""
    src = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        dst = sqlite3.connect(dest)
        try:
            with dst:
                src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _upgrade(path: Path, version: int) -> None:
    """Copy the file aside, then step the schema up one version at a time."""
    backup = backup_path_for(path, version)
    try:
        sqlite_backup(path, backup)
    except sqlite3.Error as exc:
        raise ProjectError(explain_error(exc, path) or f"Cannot back up {path} before "
                           f"upgrading it: {exc}") from exc
    engine = _make_engine(path)
    try:
        with engine.begin() as conn:
            _step_up(conn, path, version)
    except DBAPIError as exc:
        raise ProjectError(explain_error(exc, path) or f"Cannot upgrade {path}: {exc}") from exc
    finally:
        engine.dispose()


# ------------------------------------------------------------------ PostgreSQL
def _server_engine(url: ServerURL, lock_wait: LockWait) -> Engine:
    """psycopg 3 engine: short connect timeout and TCP keepalives (a pulled cable is noticed
    in seconds, not minutes), a ping before reusing a pooled connection (a restarted server
    is reconnected to), and the project write lock on every write transaction."""
    given = set(url.url.query)
    defaults = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "densestudio",
                "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3,
                "keepalives_count": 3, "tcp_user_timeout": 15_000}
    engine = create_engine(url.url, pool_pre_ping=True,
                           connect_args={k: v for k, v in defaults.items() if k not in given})

    def on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("densestudio_write"):
            _lock_project(conn, url, lock_wait)

    event.listen(engine, "begin", on_begin)
    return engine


def _lock_project(conn: Connection, url: ServerURL, lock_wait: LockWait) -> None:
    """Take the project's write lock (held until commit or rollback): at once if free, else
    waiting - quietly at first, then with a notice - and finally with a clear error."""
    if conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({PROJECT_LOCK_KEY})").scalar():
        return
    notice = LOCK_NOTICE_S if lock_wait.notice_s is None else lock_wait.notice_s
    limit = LOCK_WAIT_S if lock_wait.wait_s is None else lock_wait.wait_s
    started = time.monotonic()
    for attempt in range(2):
        budget = notice if attempt == 0 else max(limit - (time.monotonic() - started), 0.001)
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(int(budget * 1000), 1)}")
        try:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PROJECT_LOCK_KEY})")
        except OperationalError as exc:
            if _sqlstate(exc) != "55P03":  # lock_not_available
                raise
            # Nothing was done in this transaction yet: roll it back and start afresh.
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None  # a connection inside a transaction has one
            dbapi.rollback()
            if attempt == 0:
                lock_wait.notify(f"waiting for another DenseStudio client that is writing to "
                                 f"this project ({url.display})...")
            continue
        conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
        return
    raise ProjectError(
        f"{url.display} stayed locked by another client for {limit:.0f} s, so nothing was "
        "changed. Let the other DenseStudio window or command finish and try again.")


def _server_database(url: ServerURL) -> Database:
    lock_wait = LockWait()
    engine = _server_engine(url, lock_wait)
    reads = sessionmaker(engine, expire_on_commit=False)
    writes = sessionmaker(engine.execution_options(densestudio_write=True),
                          expire_on_commit=False)
    return Database(url, engine, reads, writes, None, lock_wait)


def _server_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table("meta"):
        return None
    value = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar()
    try:
        return None if value is None else int(value)
    except ValueError:
        raise ProjectError(f"the database has an invalid schema version ({value!r}); it was "
                           "not written by DenseStudio or has been edited.") from None


def _create_server_database(url: ServerURL) -> Database:
    """Create the tables in an existing, empty database (the server's administrator creates
    the database itself: ``createdb``), in one transaction."""
    database = _server_database(url)
    with _disposed_on_failure(database, url, "create"):
        with database.engine.execution_options(densestudio_write=True).begin() as conn:
            if _server_version(conn) is not None:
                raise ProjectError(f"{url.display} already holds a DenseStudio project; open "
                                   "it instead of creating it.")
            if inspect(conn).get_table_names():
                raise ProjectError(f"{url.display} is not empty (it has tables of another "
                                   "program); give an empty database.")
            Base.metadata.create_all(conn)
            conn.execute(insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
    return database


@contextmanager
def _disposed_on_failure(database: Database, url: ServerURL, doing: str) -> Iterator[None]:
    """Creating or opening a server project: on any failure the connections are closed, and
    a database error becomes one clear line ("Cannot open ...: ...")."""
    try:
        yield
    except BaseException as exc:
        database.dispose()
        if isinstance(exc, DBAPIError):
            error = storage_error(exc, url)
            raise (error or ProjectError(f"Cannot {doing} {url.display}: "
                                         f"{_first_line(exc)}")) from exc
        raise


def _open_server_database(url: ServerURL) -> Database:
    """Connect, check the schema version, upgrade it in one locked transaction if it is
    older (no copy is made: the upgrade commits whole or not at all; `pg_dump` is the
    backup), and note when this database user may only read."""
    database = _server_database(url)
    with _disposed_on_failure(database, url, "open"):
        with database.engine.connect() as conn:
            version = _check_version(_server_version(conn), url.display)
            missing = set(Base.metadata.tables) - set(inspect(conn).get_table_names())
            writable = conn.exec_driver_sql(
                "SELECT has_table_privilege('image', 'UPDATE')").scalar()
            user = conn.exec_driver_sql("SELECT current_user").scalar()
        if not writable:
            if version < SCHEMA_VERSION:
                raise ProjectError(f"{url.display} must be upgraded to this DenseStudio's "
                                   f"format, but the database user {user} may only read it.")
            return Database(url, database.engine, database.sessions, database.writer,
                            f"the database user {user} may only read it", database.lock_wait)
        if version < SCHEMA_VERSION or missing:
            with database.engine.execution_options(densestudio_write=True).begin() as conn:
                current = _server_version(conn) or version  # another client may have done it
                _step_up(conn, url, current)
    return database


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
    "ServerURL",
    "Target",
    "backup_path_for",
    "create_database",
    "describe",
    "engine_url",
    "explain_error",
    "get_meta",
    "is_disconnect",
    "open_database",
    "project_target",
    "resolve_stored_path",
    "set_meta",
    "storage_error",
    "stored_path",
]
