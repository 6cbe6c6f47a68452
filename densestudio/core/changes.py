"""Change numbers and the change feed: how one client learns what the others changed.

Every write transaction that changes labels, classes, splits or image rows takes the next
project change number (meta ``change_seq``; writers are serialized by the project write lock,
so numbers are unique and become visible in order) and stamps it on the image rows it
touched (``image.change_seq``). A client that has seen everything up to number N asks for
the rows stamped after N: one indexed query, the same on SQLite and PostgreSQL.

On PostgreSQL the writer also sends ``NOTIFY densestudio_changes`` (delivered at commit), so
a listening client wakes at once; without it (SQLite, or a listener that lost its connection)
the feed polls every ``POLL_S`` seconds. Either way the result is plain data
(``ChangeBatch``) that any thread can hold.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from densestudio.core import db
from densestudio.core.models import Image, Meta
from densestudio.core.sessions import Sessions

if TYPE_CHECKING:
    import psycopg


CHANNEL = "densestudio_changes"
POLL_S = 1.0  # the polling fallback: others' changes show within about this long
MAX_IDS = 20_000  # a bigger batch (an import, a resplit) says "reload everything" instead
_SESSION_KEY = "densestudio_change_seq"
CHUNK = 5000

log = logging.getLogger("densestudio")


def bump(s: Session, image_ids: Sequence[int] = (), classes: bool = False,
         everything: bool = False, added: bool = False) -> int:
    """Give this write transaction its change number (once) and stamp it on ``image_ids``;
    ``classes``: the classes changed; ``everything``: too many rows to list (resplit);
    ``added``: images were added (a view lists them only after reloading)."""
    seq = s.info.get(_SESSION_KEY)
    if seq is None:
        seq = int(db.get_meta(s, "change_seq", "0") or 0) + 1
        db.set_meta(s, "change_seq", str(seq))
        s.info[_SESSION_KEY] = seq
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT pg_notify(:channel, :payload)"),
                      {"channel": CHANNEL, "payload": str(seq)})
    if classes:
        db.set_meta(s, "classes_seq", str(seq))
    if everything:
        db.set_meta(s, "reload_seq", str(seq))
    if added:
        db.set_meta(s, "added_seq", str(seq))
    ids = list(image_ids)
    for start in range(0, len(ids), CHUNK):
        s.execute(update(Image).where(Image.id.in_(ids[start:start + CHUNK]))
                  .values(change_seq=seq))
    return seq


def session_seq(s: Session) -> int | None:
    """The change number this transaction has taken, if any (for rows it inserts)."""
    return s.info.get(_SESSION_KEY)


@dataclass(frozen=True)
class ChangeBatch:
    """What changed after change number ``since`` up to ``seq``."""

    since: int
    seq: int
    versions: tuple[tuple[int, int], ...]  # (image id, its label version now), touched rows
    classes: bool  # classes were added, renamed, recoloured, reordered or removed
    everything: bool  # too much to list: reload the whole view (a resplit, a huge import)
    added: bool = False  # images were added (they are among ``versions`` unless everything)

    @property
    def image_ids(self) -> list[int]:
        return [image_id for image_id, _ in self.versions]


def current_seq(project: Sessions) -> int:
    """The project's latest change number (where a new feed starts)."""
    with project.session() as s:
        return int(db.get_meta(s, "change_seq", "0") or 0)


def read_changes(project: Sessions, since: int) -> ChangeBatch | None:
    """The changes after number ``since``, or None if there are none (one cheap query)."""
    with project.session() as s:
        meta = dict(iter(s.execute(select(Meta.key, Meta.value).where(
            Meta.key.in_(("change_seq", "classes_seq", "reload_seq", "added_seq"))))))
        seq = int(meta.get("change_seq") or 0)
        if seq <= since:
            return None
        everything = int(meta.get("reload_seq") or 0) > since
        rows: list[tuple[int, int]] = []
        if not everything:
            rows = [(int(r[0]), int(r[1])) for r in s.execute(
                select(Image.id, Image.label_version).where(Image.change_seq > since)
                .order_by(Image.id).limit(MAX_IDS + 1))]
            everything = len(rows) > MAX_IDS
    return ChangeBatch(since, seq, () if everything else tuple(rows),
                       int(meta.get("classes_seq") or 0) > since, everything,
                       int(meta.get("added_seq") or 0) > since)


class ChangeFeed:
    """Others' changes, for a GUI (``poll`` on a timer) or a worker thread (``wait``).

    ``wait`` blocks until something changed after the last batch it returned (or the
    timeout passes): on PostgreSQL it LISTENs on its own connection and wakes on NOTIFY,
    checking every ``POLL_S`` s as well in case a notification was missed; elsewhere it
    polls. A lost server raises ``ServerUnreachable``; call again to retry.
    """

    def __init__(self, project: Sessions, since: int | None = None) -> None:
        self.project = project
        self.seq = current_seq(project) if since is None else since
        self._listener: psycopg.Connection[Any] | None = None  # LISTENing; PostgreSQL only
        self._closed = threading.Event()
        self._waiting = False

    def poll(self) -> ChangeBatch | None:
        batch = read_changes(self.project, self.seq)
        if batch is not None:
            self.seq = batch.seq
        return batch

    def wait(self, timeout: float = POLL_S) -> ChangeBatch | None:
        batch = self.poll()
        if batch is not None or self._closed.is_set():
            return batch
        if self.project.shared:
            self._waiting = True
            try:
                self._wait_for_notify(min(timeout, POLL_S))
            finally:
                self._waiting = False
                if self._closed.is_set():
                    self._hang_up()
        else:
            self._closed.wait(min(timeout, POLL_S))
        return None if self._closed.is_set() else self.poll()

    def close(self) -> None:
        """Stop: a ``wait`` in another thread returns within ``POLL_S`` and hangs up."""
        self._closed.set()
        if not self._waiting:
            self._hang_up()

    def _hang_up(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.close()
            except Exception:  # closing a dead connection
                pass

    def _wait_for_notify(self, timeout: float) -> None:
        try:
            listener = self._listener
            if listener is None or listener.closed:
                listener = self._listener = self._listen()
            for _ in listener.notifies(timeout=timeout, stop_after=1):
                pass
        except Exception as exc:  # the listener died: poll, listen again later
            log.info("change feed: listening failed (%s); polling instead", exc)
            self._hang_up()
            self._closed.wait(timeout)

    def _listen(self) -> psycopg.Connection[Any]:
        raw = self.project.engine.raw_connection()
        try:
            # SQLAlchemy types the DBAPI-level connection as Any | None; here it is psycopg's.
            conn = cast("psycopg.Connection[Any]", raw.driver_connection)
            raw.detach()  # ours alone: never returned to the pool
        except Exception:
            raw.close()
            raise
        conn.autocommit = True
        conn.execute(f"LISTEN {CHANNEL}")
        return conn
