"""Thumbnail cache: JPEG bytes keyed by content hash, in a SQLite file beside the project.

Kept out of the project file so the project stays small and can be mailed or backed up; the
cache is disposable and any missing entry is regenerated from the source image on demand.
Thread-safe: each thread gets its own SQLite connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from densestudio.core.imaging import ImageDecodeError, load_image, make_thumbnail, THUMBNAIL_SIZE

if TYPE_CHECKING:
    from densestudio.core.store import ImageInfo, Project


class ThumbnailCache:
    def __init__(self, project: Project | Path) -> None:
        cache_dir = project if isinstance(project, Path) else project.cache_dir
        self.path = Path(cache_dir) / "thumbnails.sqlite"
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("CREATE TABLE IF NOT EXISTS thumb (hash TEXT PRIMARY KEY, data BLOB)")
            self._local.con = con
        return con

    def get(self, content_hash: str) -> bytes | None:
        row = self._connection().execute(
            "SELECT data FROM thumb WHERE hash = ?", (content_hash,)
        ).fetchone()
        return row[0] if row else None

    def put(self, content_hash: str, data: bytes) -> None:
        self.put_many([(content_hash, data)])

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        con = self._connection()
        con.execute("BEGIN")
        try:
            con.executemany("INSERT OR REPLACE INTO thumb (hash, data) VALUES (?, ?)", items)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def get_or_make(self, image: ImageInfo, size: int = THUMBNAIL_SIZE) -> bytes | None:
        """The cached thumbnail, regenerated from the source file when the cache lacks it."""
        data = self.get(image.content_hash)
        if data is not None:
            return data
        try:
            data = make_thumbnail(load_image(Path(image.path), max_side=size), size)
        except (ImageDecodeError, OSError):
            return None
        self.put(image.content_hash, data)
        return data

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
