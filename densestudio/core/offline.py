"""Label changes that wait while the database server of a shared project cannot be reached.

A network drop while labeling loses nothing: a change that cannot be written is kept in
memory and in a small journal file on this machine (one JSON line per change, flushed to
disk before the change counts as queued), so a crash while offline does not lose it either.
``flush`` applies waiting changes in order when the server is back - under the same conflict
rule as any change (``store.Seen``: an image someone else changed meanwhile is left as they
left it and reported) - and removes each from the journal once it is written. A new queue
for the same project picks up a journal left behind and applies it on the next flush.

Thread-safe: the GUI thread queues, a worker thread may flush.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from densestudio.core import history, machine
from densestudio.core.constants import SOURCE_HUMAN
from densestudio.core.errors import ProjectError, ServerUnreachable
from densestudio.core.store import LabelChange, LabelConflict, Project, Seen, current_user

log = logging.getLogger("densestudio")


@dataclass(frozen=True)
class PendingChange:
    """One labeling step that has not reached the database yet."""

    image_ids: tuple[int, ...]
    label_id: int | None
    source: str
    who: str
    versions: tuple[tuple[int, int], ...]  # the Seen it was made from
    seq: int | None
    how: str = history.HOW_API  # for the label history

    def to_json(self) -> str:
        return json.dumps({"ids": list(self.image_ids), "label": self.label_id,
                           "source": self.source, "who": self.who,
                           "versions": [list(v) for v in self.versions], "seq": self.seq,
                           "how": self.how})

    @classmethod
    def from_json(cls, line: str) -> PendingChange:
        raw = json.loads(line)
        return cls(tuple(int(i) for i in raw["ids"]), raw["label"], str(raw["source"]),
                   str(raw["who"]), tuple((int(a), int(b)) for a, b in raw["versions"]),
                   raw["seq"], str(raw.get("how") or history.HOW_API))


@dataclass(frozen=True)
class QueueState:
    online: bool
    waiting: int  # changes waiting to be written
    images: int  # images they touch

    @property
    def message(self) -> str:
        """"offline — 3 changes waiting" (empty when online with nothing waiting)."""
        if self.online and not self.waiting:
            return ""
        what = f"{self.waiting} change{'s' if self.waiting != 1 else ''} waiting"
        return f"offline — {what}" if not self.online else f"reconnected — {what}"


@dataclass(frozen=True)
class FlushResult:
    applied: tuple[LabelChange, ...]
    conflicts: tuple[LabelConflict, ...]
    left: int  # changes still waiting (the server went away again)
    failed: tuple[str, ...] = ()  # changes that can no longer be made (e.g. class deleted)

    @property
    def image_ids(self) -> list[int]:
        return [i for change in self.applied for i in change.image_ids]


def journal_key(project: Project) -> str:
    """The project's part of journal names on this machine (the URL without password)."""
    target = project.target
    return getattr(target, "key", None) or project.location.replace(os.sep, "_")[-100:]


def journal_path(project: Project) -> Path:
    """This process's journal for a project; ``LabelQueue`` adopts those of processes that
    ended before writing theirs (a crash while offline)."""
    return machine.data_dir() / "offline" / f"{journal_key(project)}-{os.getpid()}.jsonl"


class LabelQueue:
    """Labeling that survives a lost server: ``set_labels`` writes at once when it can and
    queues otherwise; ``flush`` writes what waits."""

    def __init__(self, project: Project, journal: Path | None = None) -> None:
        self.project = project
        self.journal = journal or journal_path(project)
        self._lock = threading.RLock()
        self._pending: list[PendingChange] = self._adopt(journal is None)
        self._online = not self._pending

    # ------------------------------------------------------------ state
    def state(self) -> QueueState:
        with self._lock:
            return QueueState(self._online, len(self._pending),
                              len({i for p in self._pending for i in p.image_ids}))

    @property
    def online(self) -> bool:
        return self._online

    def mark_offline(self) -> None:
        """Someone else (the change feed) saw the server go: queue without trying."""
        self._online = False

    def pending(self) -> list[PendingChange]:
        with self._lock:
            return list(self._pending)

    # ------------------------------------------------------------ labeling
    def set_labels(
        self, image_ids: Sequence[int], label_id: int | None, source: str = SOURCE_HUMAN,
        who: str | None = None, expected: Seen | None = None, how: str = history.HOW_API,
    ) -> LabelChange | None:
        """Like ``Project.set_labels``; None when the change was queued (offline)."""
        wanted = set(image_ids)
        change = PendingChange(
            tuple(image_ids), label_id, source, who or current_user(),
            tuple((i, v) for i, v in (expected.versions if expected else {}).items()
                  if i in wanted), expected.seq if expected else None, how)
        with self._lock:
            if self._online and not self._pending:
                try:
                    return self._apply(change)
                except ServerUnreachable as exc:
                    log.warning("%s", exc)
                    self._online = False
            self._enqueue(change)
            return None

    def flush(self) -> FlushResult:
        """Write the waiting changes in order; stops (keeping the rest) if the server is
        still or again unreachable. Raises nothing for that: see ``left`` and ``online``."""
        applied: list[LabelChange] = []
        failed: list[str] = []
        with self._lock:
            while self._pending:
                try:
                    applied.append(self._apply(self._pending[0]))
                except ServerUnreachable:
                    self._online = False
                    break
                except ProjectError as exc:  # e.g. its class was deleted meanwhile
                    failed.append(str(exc))
                self._pending.pop(0)
                self._rewrite()
            else:
                self._online = True
            left = len(self._pending)
        return FlushResult(tuple(applied), tuple(c for a in applied for c in a.conflicts), left,
                           tuple(failed))

    def _apply(self, change: PendingChange) -> LabelChange:
        seen = Seen(dict(change.versions), change.seq)
        return self.project.set_labels(
            list(change.image_ids), change.label_id, change.source, change.who, change.how,
            seen if change.versions or change.seq is not None else None)

    # ------------------------------------------------------------ journal
    def _adopt(self, all_of_project: bool) -> list[PendingChange]:
        """Changes left in journals of this project on this machine (our own file, and with
        ``all_of_project`` those of other processes: a client that crashed while offline).
        Taking over those of a window still running costs nothing: writing a change twice
        finds the label already set and leaves it."""
        files = [self.journal]
        if all_of_project:
            files = sorted(self.journal.parent.glob(f"{journal_key(self.project)}-*.jsonl"))
        pending = [change for f in files for change in self._load(f)]
        if pending:
            self._rewrite(pending)
        for f in files:
            if f != self.journal:
                f.unlink(missing_ok=True)
        return pending

    def _load(self, path: Path) -> list[PendingChange]:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("Cannot read the offline journal %s: %s", path, exc)
            return []
        pending = []
        for line in lines:
            try:
                pending.append(PendingChange.from_json(line))
            except (ValueError, KeyError, TypeError):
                log.warning("Ignoring a damaged line of %s (a crash while writing it)", path)
        return pending

    def _enqueue(self, change: PendingChange) -> None:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with open(self.journal, "a", encoding="utf-8") as f:
            f.write(change.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._pending.append(change)

    def _rewrite(self, pending: list[PendingChange] | None = None) -> None:
        pending = self._pending if pending is None else pending
        if not pending:
            self.journal.unlink(missing_ok=True)
            return
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.journal.with_name(self.journal.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(p.to_json() + "\n" for p in pending))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.journal)
