"""Stratified, stable train/val/test assignment.

Each labeled image gets a split once. New images of a class fill whichever split is furthest
below its target share, visiting them in an order fixed by (seed, content hash), so adding
images never moves existing ones and the same files always land in the same place. The test
split can be locked: then no image enters or leaves it, not even on a re-split.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from densestudio.core import db
from densestudio.core.errors import ProjectError
from densestudio.core.models import SPLITS, Image

DEFAULT_RATIOS = (0.70, 0.15, 0.15)
DEFAULT_SEED = 0


@dataclass(frozen=True)
class SplitSettings:
    ratios: tuple[float, float, float] = DEFAULT_RATIOS
    seed: int = DEFAULT_SEED
    test_locked: bool = False


def read_settings(s: Session) -> SplitSettings:
    ratios = tuple(float(x) for x in (db.get_meta(s, "split_ratios") or "0.7,0.15,0.15").split(","))
    return SplitSettings(
        ratios=ratios,  # type: ignore[arg-type]
        seed=int(db.get_meta(s, "split_seed") or DEFAULT_SEED),
        test_locked=(db.get_meta(s, "test_locked") or "0") == "1",
    )


def _write_settings(s: Session, settings: SplitSettings) -> None:
    db.set_meta(s, "split_ratios", ",".join(f"{r:g}" for r in settings.ratios))
    db.set_meta(s, "split_seed", str(settings.seed))
    db.set_meta(s, "test_locked", "1" if settings.test_locked else "0")


def _order_key(seed: int, content_hash: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{content_hash}".encode(), digest_size=8).digest()


def assign_missing_splits(s: Session) -> int:
    """Give every labeled image without a split one; returns how many were assigned."""
    settings = read_settings(s)
    todo = list(
        s.execute(
            select(Image.id, Image.label_id, Image.content_hash).where(
                Image.split.is_(None), Image.label_id.is_not(None)
            )
        )
    )
    if not todo:
        return 0
    classes = {label for _, label, _ in todo}
    counts: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    for label, split in s.execute(
        select(Image.label_id, Image.split).where(
            Image.label_id.in_(classes), Image.split.is_not(None)
        )
    ):
        counts[label][split] += 1

    ratios = dict(zip(SPLITS, settings.ratios))
    if settings.test_locked:
        ratios["test"] = 0.0
    todo.sort(key=lambda r: (r[1], _order_key(settings.seed, r[2])))
    assigned: dict[str, list[int]] = defaultdict(list)
    for image_id, label, _ in todo:
        c = counts[label]
        total = sum(c.values()) + 1
        # The split furthest below its target share; ties go train, val, test.
        split = max(SPLITS, key=lambda sp: (ratios[sp] * total - c[sp], -SPLITS.index(sp)))
        c[split] += 1
        assigned[split].append(image_id)
    for split, ids in assigned.items():
        for start in range(0, len(ids), 5000):
            s.execute(
                update(Image).where(Image.id.in_(ids[start : start + 5000])).values(split=split)
            )
    return len(todo)


def resplit(
    s: Session,
    ratios: tuple[float, float, float] | None = None,
    seed: int | None = None,
) -> int:
    """Re-assign splits of all labeled images (a locked test set stays as it is)."""
    settings = read_settings(s)
    ratios = tuple(ratios or settings.ratios)  # type: ignore[assignment]
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ProjectError("Split ratios must be three non-negative numbers that sum to 1.")
    if seed is None:
        seed = random.SystemRandom().randrange(1_000_000)
    _write_settings(s, SplitSettings(ratios, seed, settings.test_locked))  # type: ignore[arg-type]
    stmt = update(Image).values(split=None)
    if settings.test_locked:
        stmt = stmt.where((Image.split != "test") | Image.split.is_(None))
    s.execute(stmt)
    return assign_missing_splits(s)


def set_test_locked(s: Session, locked: bool) -> None:
    settings = read_settings(s)
    _write_settings(s, SplitSettings(settings.ratios, settings.seed, locked))


def set_ratios(s: Session, ratios: tuple[float, float, float]) -> None:
    """Store new target ratios for future assignments (use resplit to apply them to all)."""
    settings = read_settings(s)
    _write_settings(s, SplitSettings(ratios, settings.seed, settings.test_locked))
