"""Hash chains over append-only tables: editing the project file behind the app's back shows.

Every row of a chained table (label history, approvals) stores ``hash`` = SHA-256 of its own
content together with the previous row's hash (``prev_hash``), and the newest row's id and
hash are kept as the chain's head in the project's meta table, written in the same
transaction. ``verify`` recomputes everything and says which rows were changed, deleted,
inserted or moved, and whether rows were cut off the end.

What this protects against: someone (or some tool) editing, deleting or reordering rows in
the SQLite file outside DenseStudio. It is not a signature: whoever understands the scheme
can rewrite the whole chain. For that, write down (or print in the report) the head hash at
sign-off: a rewritten chain no longer ends in that hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from densestudio.core import db
from densestudio.core.models import Approval, LabelEvent, Meta, table_of

GENESIS = "0" * 64
_SEP = "\x1f"


@dataclass(frozen=True)
class Chain:
    """A chained table: its ORM class and the columns that make up a row's content."""

    name: str  # used in messages and the meta key
    model: type[LabelEvent] | type[Approval]
    fields: tuple[str, ...]  # content columns in hashing order (id first)

    @property
    def head_key(self) -> str:
        return f"chain_head:{self.name}"


@dataclass(frozen=True)
class ChainProblem:
    chain: str
    row_id: int | None
    what: str

    def __str__(self) -> str:
        where = f"row {self.row_id}" if self.row_id is not None else "chain"
        return f"{self.chain} {where}: {self.what}"


@dataclass(frozen=True)
class ChainStatus:
    chain: str
    rows: int
    head_id: int
    head_hash: str
    problems: tuple[ChainProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _encode(value: object) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if value is None:
        return "\x00"
    if kind is bool:
        return "1" if value else "0"
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    return str(value)


def row_hash(values: Sequence[object], prev_hash: str) -> str:
    """SHA-256 of a row's content values and the previous row's hash."""
    text = _SEP.join(map(_encode, values)) + _SEP + prev_hash
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tail(s: Session, chain: Chain) -> tuple[int, str]:
    """(id, hash) of the newest row, or (0, GENESIS) for an empty chain.

    ``append`` calls it after a write, so that SQLite's write lock is held and no other
    process can append in between.
    """
    row = s.execute(
        select(chain.model.id, chain.model.hash).order_by(chain.model.id.desc()).limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def append(s: Session, chain: Chain, rows: list[dict[str, object]]) -> str:
    """Give ``rows`` (dicts of the content columns except id) the next ids and their hashes,
    insert them and move the head; one statement, in the caller's transaction. Returns the
    new head hash."""
    if not rows:
        return tail(s, chain)[1]
    # A write first, so SQLite's write lock is held while the tail is read: two processes
    # appending at once queue up instead of forking the chain.
    s.execute(update(Meta).where(Meta.key == chain.head_key).values(value=Meta.value))
    last_id, last_hash = tail(s, chain)
    for row in rows:
        last_id += 1
        row["id"] = last_id
        row["prev_hash"] = last_hash
        last_hash = row_hash([row[f] for f in chain.fields], last_hash)
        row["hash"] = last_hash
    s.connection().execute(table_of(chain.model).insert(), rows)  # Core executemany: fast
    db.set_meta(s, chain.head_key, f"{last_id} {last_hash}")
    return last_hash


def head(s: Session, chain: Chain) -> tuple[int, str]:
    """The head recorded in meta: (id, hash), or (0, GENESIS) when nothing was appended."""
    value = db.get_meta(s, chain.head_key)
    if not value:
        return 0, GENESIS
    try:
        head_id, head_hash = value.split()
        return int(head_id), head_hash
    except ValueError:
        return -1, value


def verify(s: Session, chain: Chain, batch: int = 5000) -> ChainStatus:
    """Recompute the chain and compare it with the stored hashes and the head."""
    problems: list[ChainProblem] = []
    columns = [getattr(chain.model, f) for f in chain.fields]
    prev_id, prev_hash, count = 0, GENESIS, 0
    stmt = select(*columns, chain.model.prev_hash, chain.model.hash).order_by(chain.model.id)

    def problem(row_id: int | None, what: str) -> None:
        if len(problems) < 1000:
            problems.append(ChainProblem(chain.name, row_id, what))

    # Rows of column values, whatever their types (all hashed as text).
    rows: Iterable[Sequence[Any]] = s.execute(stmt.execution_options(yield_per=batch))
    for *values, stored_prev, stored_hash in rows:
        row_id = int(values[0])
        count += 1
        if row_id != prev_id + 1:
            gone = (f"row {prev_id + 1}" if row_id == prev_id + 2
                    else f"rows {prev_id + 1}-{row_id - 1}")
            problem(row_id, f"{gone} before it {'is' if row_id == prev_id + 2 else 'are'} "
                            "missing (deleted)")
        elif stored_prev != prev_hash:
            problem(row_id, "does not follow the row before it (a row was changed, "
                            "inserted or moved)")
        if row_hash(values, stored_prev) != stored_hash:
            problem(row_id, "content was changed after it was written")
        prev_id, prev_hash = row_id, stored_hash
    head_id, head_hash = head(s, chain)
    if head_id == -1:
        problem(None, "the recorded head is unreadable (edited)")
    elif head_id > prev_id:
        cut = head_id - prev_id
        problem(None, f"the newest {cut} row{'s were' if cut != 1 else ' was'} deleted "
                      f"(the chain ended at row {head_id}, now at {prev_id})")
    elif head_id < prev_id:
        problem(prev_id if head_id == prev_id - 1 else None,
                f"rows after row {head_id} were added outside DenseStudio")
    elif head_hash != prev_hash:
        problem(prev_id or None, "the newest row does not match the recorded head (changed)")
    return ChainStatus(chain.name, count, prev_id, prev_hash, tuple(problems))
