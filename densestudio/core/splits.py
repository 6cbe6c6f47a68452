"""Stratified, stable, leak-free train/val/test assignment.

Each labeled image gets a split once. New images of a class fill whichever split is furthest
below its target share, visiting them in an order fixed by (seed, content hash), so adding
images never moves existing ones and the same files always land in the same place. The test
split can be locked: then no image enters or leaves it, not even on a re-split. That rule
lives in one place, ``_update_split``, which every change of a split goes through (import,
labeling, re-split, group-key changes, near-duplicate moves); while locked, new images are
shared between train and val in the ratio train:val.

With a group key (the parent folder, or a regex on the file name such as a lot or serial
number) whole groups are assigned instead of images: every image of a group lands in the
split its group already has, so near-identical shots of one part never straddle train and
test. (A new member of a group held in a locked test set stays unassigned, i.e. unused,
rather than leak into training.)

By default (no group key) the groups are those of ``core.near_duplicates``: near-identical
images and images whose names share a stem (``tile7_light1``, ``tile7_light2``), stored as
the meta key ``split_groups`` when an import ends or before a re-split. A new image joins the
split its group already has.

A label that came from a model (an accepted prediction) never becomes a test answer: such
images go to train or val, and one whose group sits in test stays unassigned.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from densestudio.core import changes, db
from densestudio.core.constants import SOURCE_PREDICTION, SPLITS
from densestudio.core.errors import ProjectError
from densestudio.core.models import Image

DEFAULT_RATIOS = (0.70, 0.15, 0.15)
DEFAULT_SEED = 0
GROUPS_META = "split_groups"  # JSON list of lists of image ids kept in one split


@dataclass(frozen=True)
class SplitSettings:
    ratios: tuple[float, float, float] = DEFAULT_RATIOS
    seed: int = DEFAULT_SEED
    test_locked: bool = False
    group_by: str = ""  # "" (none) | "folder" | "regex:<pattern>"


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Three finite, non-negative fractions that sum to 1, or a ProjectError saying so."""
    values = tuple(float(r) for r in ratios)
    if (len(values) != 3 or not all(math.isfinite(r) and r >= 0 for r in values)
            or abs(sum(values) - 1.0) > 1e-6):
        raise ProjectError("Split ratios must be three non-negative numbers that sum to 1 "
                           "(train,val,test, e.g. 0.7,0.15,0.15).")
    return values


def read_settings(s: Session) -> SplitSettings:
    try:  # a hand-edited or damaged value falls back to the default, never a traceback
        ratios = check_ratios([float(x) for x in (db.get_meta(s, "split_ratios") or "").split(",")])
    except (ValueError, ProjectError):
        ratios = DEFAULT_RATIOS
    try:
        seed = int(db.get_meta(s, "split_seed") or DEFAULT_SEED)
    except ValueError:
        seed = DEFAULT_SEED
    return SplitSettings(
        ratios=ratios,
        seed=seed,
        test_locked=(db.get_meta(s, "test_locked") or "0") == "1",
        group_by=db.get_meta(s, "split_group_by") or "",
    )


def _write_settings(s: Session, settings: SplitSettings) -> None:
    db.set_meta(s, "split_ratios", ",".join(f"{r:g}" for r in settings.ratios))
    db.set_meta(s, "split_seed", str(settings.seed))
    db.set_meta(s, "test_locked", "1" if settings.test_locked else "0")
    db.set_meta(s, "split_group_by", settings.group_by)


def group_key_function(group_by: str) -> Callable[[str], str] | None:
    """path -> group key, or None when images are split one by one."""
    if not group_by:
        return None
    if group_by == "folder":
        return lambda path: str(PurePath(path).parent)
    if group_by.startswith("regex:"):
        try:
            pattern = re.compile(group_by[len("regex:") :])
        except re.error as exc:
            raise ProjectError(f"Invalid group pattern: {exc}") from exc
        _refuse_backtracking(pattern.pattern)

        def key(path: str) -> str:
            name = PurePath(path).name
            match = pattern.search(name)
            if match is None:
                return "\0" + name  # no key: the image is its own group
            return match.group(1) if pattern.groups else match.group(0)

        return key
    raise ProjectError(f"Unknown group setting '{group_by}' (use folder or regex:PATTERN).")


def _refuse_backtracking(text: str) -> None:
    """Refuse a group pattern that can take exponential time on some file name: a repeat
    of something that itself repeats or has alternatives (``(a+)+``, ``(\\w+\\s?)*``,
    ``(a|ab)*``). Python's re cannot be interrupted, so such a pattern is stopped here
    instead of hanging a re-split (file names are short: other patterns stay fast)."""
    import importlib

    c = importlib.import_module("re._constants")  # re's own parser, not a public API
    parser = importlib.import_module("re._parser")
    repeats = {c.MAX_REPEAT, c.MIN_REPEAT}

    def risky(items: Iterable[tuple[object, Any]], inside_repeat: bool) -> bool:
        for op, av in items:
            if op in repeats:
                low, high, body = av
                if inside_repeat and high > 1 and low != high:  # \d{3} is one way only
                    return True
                if risky(body, inside_repeat or high > 1):
                    return True
            elif op == c.BRANCH:
                if inside_repeat:
                    return True
                if any(risky(b, inside_repeat) for b in av[1]):
                    return True
            elif op == c.SUBPATTERN:
                if risky(av[3], inside_repeat):
                    return True
            elif op in (c.ASSERT, c.ASSERT_NOT):
                if risky(av[1], inside_repeat):
                    return True
        return False

    if risky(parser.parse(text), False):
        raise ProjectError(
            f"The group pattern '{text}' repeats something that itself repeats or has "
            "alternatives, which can take hours on some file names; write it without the "
            "nested repeat (e.g. '(lot\\d+)' instead of '((lot)+\\d+)+').")


def _order_key(seed: int, content_hash: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{content_hash}".encode(), digest_size=8).digest()


def read_groups(s: Session) -> list[list[int]]:
    """The stored groups (near-duplicates, name stems) that must share a split."""
    try:
        value = json.loads(db.get_meta(s, GROUPS_META) or "[]")
        return [[int(i) for i in group] for group in value if len(group) > 1]
    except (ValueError, TypeError):  # a damaged value: no groups, never a traceback
        return []


def write_groups(s: Session, groups: Sequence[Sequence[int]]) -> None:
    db.set_meta(s, GROUPS_META, json.dumps([sorted(g) for g in groups if len(g) > 1]))


@dataclass(frozen=True)
class GroupLeaks:
    """Stored groups that span splits right now, and groups whose labels disagree."""

    spanning: tuple[tuple[int, ...], ...]
    touching_test: int  # of the spanning groups
    conflicts: tuple[tuple[int, ...], ...]  # labeled members carry different classes

    @property
    def images(self) -> int:
        return sum(len(g) for g in self.spanning)

    def warning(self) -> str:
        """One line for the Train tab, the Review header and the report ("" when clean)."""
        parts = []
        if self.spanning:
            n = len(self.spanning)
            parts.append(
                f"{n:,} group{'s' if n != 1 else ''} of near-identical or same-name images "
                f"({self.images:,} images) span more than one split"
                + (f", {self.touching_test:,} touching the test set" if self.touching_test
                   else "") + ": the figures may flatter the model (Splits panel › "
                "Check near-duplicates, Move them together).")
        if self.conflicts:
            n = len(self.conflicts)
            parts.append(f"{n:,} group{'s' if n != 1 else ''} of near-identical images "
                         "carry different labels (label conflicts).")
        return " ".join(parts)


def leak_warning(leaks: GroupLeaks, model_in_test: int) -> str:
    """What makes the test figures flatter the model, in one paragraph ("" when clean)."""
    text = leaks.warning()
    if model_in_test:
        text += (f" {model_in_test:,} test label{'s' if model_in_test != 1 else ''} came from "
                 "a model (accepted predictions), not a person.")
    return text.strip()


def group_leaks(s: Session) -> GroupLeaks:
    """Which stored groups span splits or disagree on labels (cheap: only their members)."""
    groups = read_groups(s)
    ids = [i for g in groups for i in g]
    state: dict[int, tuple[str | None, int | None]] = {}
    for start in range(0, len(ids), 5000):
        for image_id, split, label in s.execute(select(Image.id, Image.split, Image.label_id)
                                                .where(Image.id.in_(ids[start:start + 5000]))):
            state[image_id] = (split, label)
    spanning, conflicts, touching = [], [], 0
    for group in groups:
        splits = {state[i][0] for i in group if i in state and state[i][0] is not None}
        labels = {state[i][1] for i in group if i in state and state[i][1] is not None}
        if len(splits) > 1:
            spanning.append(tuple(group))
            touching += "test" in splits
        if len(labels) > 1:
            conflicts.append(tuple(group))
    return GroupLeaks(tuple(spanning), touching, tuple(conflicts))


def model_labels_in_test(s: Session) -> int:
    """Test images whose label a model made (from before this rule, or a locked test set)."""
    return int(s.scalar(select(func.count()).select_from(Image).where(
        Image.split == "test", Image.label_source == SOURCE_PREDICTION)) or 0)


def assign_missing_splits(s: Session, image_ids: Sequence[int] | None = None) -> int:
    """Give labeled images without a split one; returns how many were assigned.

    ``image_ids`` limits the work to images just (re)labeled, which keeps a key press cheap
    in a 100k-image project; None checks every image.
    """
    settings = read_settings(s)
    groups = read_groups(s)
    if settings.group_by:
        return _assign_groups(s, settings, groups)
    stmt = select(Image.id, Image.label_id, Image.content_hash, Image.label_source).where(
        Image.split.is_(None), Image.label_id.is_not(None)
    )
    if image_ids is None:
        todo = list(s.execute(stmt))
    else:
        todo = []
        for start in range(0, len(image_ids), 5000):
            todo.extend(s.execute(stmt.where(Image.id.in_(image_ids[start : start + 5000]))))
    if not todo:
        return 0
    classes = {label for _, label, _, _ in todo}
    counts: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    for label, split in s.execute(
        select(Image.label_id, Image.split).where(
            Image.label_id.in_(classes), Image.split.is_not(None)
        )
    ):
        counts[label][split] += 1  # type: ignore[index]  # the query excludes NULLs

    # Units: an image alone, or every pending member of its stored group together.
    group_of = {i: n for n, g in enumerate(groups) for i in g}
    units: dict[tuple[str, int], list[tuple[int, int, str, str | None]]] = defaultdict(list)
    for image_id, label, digest, source in todo:
        key = ("g", group_of[image_id]) if image_id in group_of else ("i", image_id)
        units[key].append((image_id, label, digest, source))  # type: ignore[arg-type]
    group_split = _group_splits(s, {k[1] for k in units if k[0] == "g"}, groups)

    assigned: dict[str, list[int]] = defaultdict(list)
    order = sorted(units, key=lambda k: (units[k][0][1], _order_key(settings.seed,
                                                                     units[k][0][2])))
    for key in order:
        rows = units[key]
        label = Counter(r[1] for r in rows).most_common(1)[0][0]
        model_made = any(r[3] == SOURCE_PREDICTION for r in rows)
        split = group_split.get(key[1]) if key[0] == "g" else None
        if split is None:
            ratios = _targets(settings, no_test=model_made)
            split = _furthest_below(counts[label], ratios, len(rows))
        for image_id, row_label, _, source in rows:
            if split == "test" and (settings.test_locked or source == SOURCE_PREDICTION):
                continue  # a locked test set stays closed; a model's label is no answer
            counts[row_label][split] += 1
            assigned[split].append(image_id)
    _write_splits(s, assigned, settings.test_locked)
    return sum(len(v) for v in assigned.values())


def _group_splits(s: Session, wanted: set[int], groups: list[list[int]]) -> dict[int, str]:
    """The split each wanted group's assigned members mostly sit in."""
    member_group = {i: n for n in wanted for i in groups[n]}
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    ids = list(member_group)
    for start in range(0, len(ids), 5000):
        for image_id, split in s.execute(select(Image.id, Image.split).where(
                Image.id.in_(ids[start:start + 5000]), Image.split.is_not(None))):
            votes[member_group[image_id]][split] += 1  # type: ignore[index]  # NOT NULL by the query
    return {n: max(SPLITS, key=lambda sp: (v[sp], -SPLITS.index(sp)))
            for n, v in votes.items()}


def _targets(settings: SplitSettings, no_test: bool = False) -> dict[str, float]:
    """Target shares new images are assigned by. With the test set locked (or for labels a
    model made), only train and val take images, in the ratio train:val (test counts are
    left out of the shares)."""
    ratios = dict(zip(SPLITS, settings.ratios, strict=False))
    if not settings.test_locked and not no_test:
        return ratios
    open_share = ratios["train"] + ratios["val"]
    if open_share <= 0:
        return {"train": 1.0, "val": 0.0}
    return {"train": ratios["train"] / open_share, "val": ratios["val"] / open_share}


def _furthest_below(counts: dict[str, int], ratios: dict[str, float], adding: int) -> str:
    """The split (among those in ``ratios``) furthest below its target share after adding
    ``adding`` images; ties go train, val, test."""
    total = sum(counts[sp] for sp in ratios) + adding
    return max(ratios, key=lambda sp: (ratios[sp] * total - counts[sp], -SPLITS.index(sp)))


def _update_split(s: Session, ids: Sequence[int] | None, split: str | None,
                  test_locked: bool) -> None:
    """Set the split of these images (None: all). THE rule of a locked test set: no image
    enters test, and no image in test gets another split (or none)."""
    if test_locked and split == "test":
        raise ProjectError("The test set is locked: no image can be added to it. Unlock it "
                           "first.")
    stmt = update(Image).values(split=split)
    if test_locked:
        stmt = stmt.where(or_(Image.split.is_(None), Image.split != "test"))
    if ids is None:
        s.execute(stmt)
        changes.bump(s, everything=True)
        return
    ids = list(ids)
    seq = changes.bump(s)
    for start in range(0, len(ids), 5000):
        s.execute(stmt.where(Image.id.in_(ids[start : start + 5000])).values(change_seq=seq))


def _write_splits(s: Session, assigned: dict[str, list[int]], test_locked: bool) -> None:
    for split, ids in assigned.items():
        _update_split(s, ids, split, test_locked)


def release_from_test(s: Session, image_ids: Sequence[int]) -> None:
    """Take images whose label a model just made out of an unlocked test set (they get a
    train/val split by assign_missing_splits): a model's label is no test answer."""
    if read_settings(s).test_locked or not image_ids:
        return
    ids = list(image_ids)
    for start in range(0, len(ids), 5000):
        chunk = list(s.scalars(select(Image.id).where(Image.id.in_(ids[start:start + 5000]),
                                                      Image.split == "test")))
        if chunk:
            _update_split(s, chunk, None, False)


def clear_splits(s: Session, image_ids: Sequence[int]) -> None:
    """Take these images out of their splits (assign_missing_splits gives them new ones);
    images in a locked test set stay."""
    _update_split(s, image_ids, None, read_settings(s).test_locked)


def set_split(s: Session, image_ids: Sequence[int], split: str) -> None:
    """Move images to ``split`` by hand (e.g. near-duplicates together), under the
    locked-test rule: a ProjectError when it would add to or take from a locked test set."""
    if split not in SPLITS:
        raise ProjectError(f"Unknown split '{split}'.")
    locked = read_settings(s).test_locked
    if locked and split != "test":
        in_test = s.scalar(select(Image.id).where(Image.id.in_(list(image_ids)),
                                                   Image.split == "test").limit(1))
        if in_test is not None:
            raise ProjectError("The test set is locked: no image can leave it. Unlock it "
                               "first.")
    _update_split(s, image_ids, split, locked)


def _assign_groups(s: Session, settings: SplitSettings, groups: list[list[int]]) -> int:
    """Group-aware assignment: a group joins the split its members already have; new groups
    go, in (seed, key) order, to the split furthest below its target share of images. The
    stored near-duplicate groups join the groups their members belong to."""
    key_of = group_key_function(settings.group_by)
    assert key_of is not None  # the caller comes here only when group_by is set
    pending = s.scalar(select(Image.id).where(
        Image.split.is_(None), Image.label_id.is_not(None)).limit(1))
    if pending is None:
        return 0
    rows = list(s.execute(select(Image.id, Image.path, Image.split, Image.label_source).where(
        Image.label_id.is_not(None))))
    key_by_id = {image_id: key_of(path) for image_id, path, _, _ in rows}
    merged = {key: key for key in key_by_id.values()}  # union-find over group keys

    def find(key: str) -> str:
        while merged[key] != key:
            merged[key] = merged[merged[key]]
            key = merged[key]
        return key

    for group in groups:
        keys = [find(key_by_id[i]) for i in group if i in key_by_id]
        for other in keys[1:]:
            a, b = find(keys[0]), find(other)
            if a != b:
                merged[max(a, b)] = min(a, b)
    group_split: dict[str, str] = {}
    counts = dict.fromkeys(SPLITS, 0)
    todo: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for image_id, _, split, source in rows:
        key = find(key_by_id[image_id])
        if split is None:
            todo[key].append((image_id, source))
        else:
            counts[split] += 1
            group_split.setdefault(key, split)
    assigned: dict[str, list[int]] = defaultdict(list)
    order = sorted(todo, key=lambda k: _order_key(settings.seed, k))
    for key in order:
        members = todo[key]
        split = group_split.get(key)
        if split is None:
            model_made = any(src == SOURCE_PREDICTION for _, src in members)
            split = _furthest_below(counts, _targets(settings, model_made), len(members))
            group_split[key] = split
        for image_id, source in members:
            if split == "test" and (settings.test_locked or source == SOURCE_PREDICTION):
                continue  # keep the locked test set closed; a model's label is no answer
            counts[split] += 1
            assigned[split].append(image_id)
    _write_splits(s, assigned, settings.test_locked)
    return sum(len(v) for v in assigned.values())


def resplit(
    s: Session,
    ratios: tuple[float, float, float] | None = None,
    seed: int | None = None,
) -> int:
    """Re-assign splits of all labeled images (a locked test set stays as it is)."""
    settings = read_settings(s)
    ratios = check_ratios(ratios or settings.ratios)
    if seed is None:
        seed = random.SystemRandom().randrange(1_000_000)
    _write_settings(s, SplitSettings(ratios, seed, settings.test_locked, settings.group_by))
    _update_split(s, None, None, settings.test_locked)  # a locked test set stays as it is
    return assign_missing_splits(s)


def set_test_locked(s: Session, locked: bool) -> None:
    settings = read_settings(s)
    _write_settings(s, SplitSettings(settings.ratios, settings.seed, locked, settings.group_by))


def set_group_by(s: Session, group_by: str) -> None:
    """Choose the group key for future assignments (use resplit to apply it to all)."""
    group_key_function(group_by)  # validates
    settings = read_settings(s)
    _write_settings(s, SplitSettings(settings.ratios, settings.seed, settings.test_locked,
                                     group_by))


def set_ratios(s: Session, ratios: tuple[float, float, float]) -> None:
    """Store new target ratios for future assignments (use resplit to apply them to all)."""
    ratios = check_ratios(ratios)
    settings = read_settings(s)
    _write_settings(s, SplitSettings(ratios, settings.seed, settings.test_locked,
                                     settings.group_by))
