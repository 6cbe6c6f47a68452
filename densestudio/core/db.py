"""Engine and session factory for a project file: SQLite pragmas, schema version, upgrades.

Every connection gets WAL (readers never block the writer, a crash never corrupts),
foreign keys on and a busy timeout so a second process (CLI import while the GUI is open)
waits instead of failing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from densestudio.core.errors import ProjectError
from densestudio.core.models import Base, Meta

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Database:
    path: Path
    engine: Engine
    sessions: sessionmaker[Session]

    def dispose(self) -> None:
        self.engine.dispose()


def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")  # durable across app crashes in WAL mode
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA cache_size = -65536")  # 64 MiB page cache
    cursor.close()


def _make_engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}", future=True)
    event.listen(engine, "connect", _on_connect)
    return engine


def read_schema_version(path: Path) -> int | None:
    """The schema version stored in a project file, or None if it has no meta table."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise ProjectError(f"Cannot open project file {path}: {exc}") from exc
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            return None
        raise ProjectError(f"{path} is not a DenseStudio project ({exc}).") from exc
    finally:
        con.close()
    return int(row[0]) if row else None


def create_database(path: Path) -> Database:
    path = Path(path)
    if path.exists():
        raise ProjectError(f"{path} already exists; open it instead of creating it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = _make_engine(path)
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions.begin() as session:
        session.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
    return Database(path, engine, sessions)


def _add_column(conn, table: str, column: str, ddl: str) -> None:  # noqa: ANN001
    names = {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")}
    if column not in names:
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")


def _upgrade_1_to_2(conn) -> None:  # noqa: ANN001
    """v2 adds the perceptual hash used by the near-duplicate check (NULL for old rows)
    and a covering index for per-class split counts."""
    _add_column(conn, "image", "phash", "INTEGER")
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_image_label_split ON image (label_id, split)")


# Upgrades from version N to N+1, each a function run inside one transaction.
_UPGRADES: dict[int, object] = {1: _upgrade_1_to_2}


def open_database(path: Path) -> Database:
    path = Path(path)
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
    if version < SCHEMA_VERSION:
        _upgrade(path, version)
    engine = _make_engine(path)
    Base.metadata.create_all(engine)  # adds tables introduced since; never drops anything
    return Database(path, engine, sessionmaker(engine, expire_on_commit=False))


def backup_path_for(path: Path, version: int) -> Path:
    return path.with_name(f"{path.name}.v{version}.bak")


def _upgrade(path: Path, version: int) -> None:
    """Copy the file aside, then step the schema up one version at a time."""
    backup = backup_path_for(path, version)
    src = sqlite3.connect(path)
    try:
        dst = sqlite3.connect(backup)
        with dst:
            src.backup(dst)
        dst.close()
    finally:
        src.close()
    engine = _make_engine(path)
    try:
        Base.metadata.create_all(engine)
        while version < SCHEMA_VERSION:
            step = _UPGRADES.get(version)
            with engine.begin() as conn:
                if step is not None:
                    step(conn)  # type: ignore[operator]
                version += 1
                conn.execute(
                    Meta.__table__.update()
                    .where(Meta.key == "schema_version")
                    .values(value=str(version))
                )
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
    "Database",
    "SCHEMA_VERSION",
    "create_database",
    "open_database",
    "get_meta",
    "set_meta",
    "backup_path_for",
]
