"""A run's frozen view of the data: which images, with which label, in which split.

The rows are written when a run starts (``core.runs.create_run``), so relabeling while it
trains cannot change what it trains and is evaluated on; a resumed run reads the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from densestudio.core import runs
from densestudio.core.profile import GRAY_MODES
from densestudio.core.store import Project
from densestudio.ml import data as D


@dataclass(frozen=True)
class Snapshot:
    class_names: tuple[str, ...]
    image_ids: tuple[int, ...]
    labels: tuple[int, ...]
    splits: tuple[str, ...]
    items: tuple[D.CacheItem, ...]
    gray: bool
    fingerprint: str

    def indices(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.splits) if s == split]


def load_snapshot(project: Project, run_id: int) -> Snapshot:
    names = runs.get_run(project, run_id).class_names
    rows = runs.snapshot_rows(project, run_id)
    return Snapshot(
        class_names=names,
        image_ids=tuple(r.image_id for r in rows),
        labels=tuple(r.class_index for r in rows),
        splits=tuple(r.split for r in rows),
        items=tuple(D.CacheItem(r.image_id, r.path, r.content_hash) for r in rows),
        gray=all(r.mode in GRAY_MODES for r in rows),
        fingerprint=D.fingerprint([(r.content_hash, names[r.class_index], r.split) for r in rows]),
    )
