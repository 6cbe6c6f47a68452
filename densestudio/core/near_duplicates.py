"""Near-identical images across splits: the leak that makes test accuracy lie.

Each image carries a 64-bit difference hash (computed at import). Two images whose hashes
differ in at most ``max_distance`` bits look the same at thumbnail scale (re-saved, re-shot,
slightly shifted). Candidate pairs come from exact matches on one of four 16-bit bands:
with max_distance <= 3, any such pair must agree on at least one band (pigeonhole), so
the search is near-linear instead of comparing all pairs of 100k images.

A 64-bit hash alone is too coarse for low-contrast inspection textures (many different
steel surfaces hash alike), so every candidate pair is confirmed by the correlation of the
two thumbnails' detail (64x64 grey minus its blur, so shared lighting or vignetting does not
count): only pairs that really look the same are reported.

The same groups, together with images whose names share a stem (``tile7_light1.png`` and
``tile7_light2.png``: one part under several lightings), are what a split keeps together by
default: ``refresh_groups`` stores them for ``core.splits`` when an import ends
(``keep_groups_together``) and before a re-split (``resplit``).
"""

from __future__ import annotations

import io
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFilter
from sqlalchemy import select, update

from densestudio.core import splits
from densestudio.core.constants import SPLITS
from densestudio.core.errors import ProjectError
from densestudio.core.imaging import thumbnail_hash
from densestudio.core.models import Image
from densestudio.core.splits import read_settings, set_split
from densestudio.core.thumbnails import ThumbnailCache

if TYPE_CHECKING:
    from densestudio.core.store import Project

BANDS = 4
MIN_CORRELATION = 0.9  # of the thumbnails' detail, for a candidate pair to count
MAX_STEM_GROUP = 16  # more images sharing a stem is a naming scheme ("crazing_12"), not a part
_VARIANT = re.compile(r"^(.*\d.*?)[_\-. ]+([a-z][a-z0-9]*|[a-z0-9]*[a-z])$")


@dataclass(frozen=True)
class NearDuplicateGroup:
    """Images that look the same, spread over more than one split."""

    image_ids: tuple[int, ...]
    splits: tuple[str, ...]  # split of each image, same order
    max_distance: int

    @property
    def crosses_test(self) -> bool:
        return "test" in self.splits and any(s != "test" for s in self.splits)


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def backfill_hashes(project: Project) -> int:
    """Compute missing dHashes (rows from older versions) from their thumbnails."""
    with project.session() as s:
        todo = list(s.scalars(select(Image.id).where(Image.phash.is_(None),
                                                    Image.missing.is_(False))))
    if not todo:
        return 0
    cache = ThumbnailCache(project.cache_dir)
    values = []
    for info in project.images_by_ids(todo):
        data = cache.get_or_make(info)
        if data is not None:
            values.append((info.id, thumbnail_hash(data)))
    cache.close()
    with project.transaction() as s:
        for image_id, value in values:
            s.execute(update(Image).where(Image.id == image_id).values(phash=value))
    return len(values)


def find_cross_split_duplicates(
    project: Project, max_distance: int = 3
) -> list[NearDuplicateGroup]:
    """Groups of near-identical labeled images that sit in different splits."""
    with project.session() as s:
        split_of = {i: sp for i, sp in s.execute(select(Image.id, Image.split).where(
            Image.split.is_not(None)))}
    clusters, worst = _clusters(project, max_distance, set(split_of))
    groups = []
    for ids in clusters:
        found = tuple(split_of[i] for i in ids)
        if len(set(found)) > 1:
            groups.append(NearDuplicateGroup(ids, found, worst[ids[0]]))  # type: ignore[arg-type]
    groups.sort(key=lambda g: (not g.crosses_test, -len(g.image_ids)))
    return groups


def _clusters(project: Project, max_distance: int, only: set[int] | None = None
              ) -> tuple[list[tuple[int, ...]], dict[int, int]]:
    """Clusters (2+ sorted ids) of near-identical images, and each cluster's largest hash
    distance (keyed by its first id); ``only`` limits the images looked at."""
    if not 0 <= max_distance <= BANDS - 1:
        raise ProjectError(f"max_distance must be between 0 and {BANDS - 1}.")
    backfill_hashes(project)
    with project.session() as s:
        rows = list(s.execute(select(Image.id, Image.phash).where(
            Image.phash.is_not(None), Image.missing.is_(False))))
    hashes = {i: _unsigned(h) for i, h in rows  # type: ignore[arg-type]  # NOT NULL
              if only is None or i in only}
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for image_id, h in hashes.items():
        for band in range(BANDS):
            buckets[(band, (h >> (16 * band)) & 0xFFFF)].append(image_id)

    parent = {i: i for i in hashes}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    signatures = _Signatures(project)
    worst: dict[int, int] = {}
    checked: set[tuple[int, int]] = set()
    for members in buckets.values():
        if len(members) < 2 or len(members) > 5000:  # flat images: skip degenerate buckets
            continue
        for a_index, a in enumerate(members):
            for b in members[a_index + 1 :]:
                distance = (hashes[a] ^ hashes[b]).bit_count()
                pair = (min(a, b), max(a, b))
                if distance > max_distance or pair in checked:
                    continue
                checked.add(pair)
                if signatures.correlation(a, b) >= MIN_CORRELATION:
                    ra, rb = find(a), find(b)
                    if ra != rb:
                        parent[ra] = rb
                    root = find(a)
                    worst[root] = max(worst.get(root, 0), worst.pop(ra, 0), worst.pop(rb, 0),
                                      distance)
    signatures.close()
    by_root: dict[int, list[int]] = defaultdict(list)
    for image_id in hashes:
        by_root[find(image_id)].append(image_id)
    clusters, worst_of = [], {}
    for root, ids in by_root.items():
        if len(ids) > 1:
            ids.sort()
            clusters.append(tuple(ids))
            worst_of[ids[0]] = worst.get(root, 0)
    return clusters, worst_of


def stem_key(path: str) -> str | None:
    """The part a file name's variants share: ``tile7_light2.png`` -> ``tile7``; a name
    without a letter and a digit (``0001.png``) gives no key (a camera counter)."""
    stem = PurePath(path).stem.lower()
    match = _VARIANT.match(stem)
    key = match.group(1) if match else stem
    if not (any(ch.isdigit() for ch in key) and any(ch.isalpha() for ch in key)):
        return None
    return key


def stem_groups(paths: dict[int, str]) -> list[tuple[int, ...]]:
    """Images whose names share a stem, in groups of 2..MAX_STEM_GROUP."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for image_id, path in paths.items():
        key = stem_key(path)
        if key is not None:
            by_key[key].append(image_id)
    return [tuple(sorted(ids)) for ids in by_key.values() if 2 <= len(ids) <= MAX_STEM_GROUP]


def refresh_groups(project: Project, max_distance: int = 3) -> list[tuple[int, ...]]:
    """Find the groups a split keeps together (near-identical images, and names sharing a
    stem, merged where they overlap) and store them for core.splits."""
    clusters, _ = _clusters(project, max_distance)
    with project.session() as s:
        paths = {i: p for i, p in s.execute(select(Image.id, Image.path).where(
            Image.missing.is_(False)))}
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        parent.setdefault(i, i)
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for group in [*clusters, *stem_groups(paths)]:
        for other in group[1:]:
            a, b = find(group[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    merged: dict[int, list[int]] = defaultdict(list)
    for image_id in list(parent):
        merged[find(image_id)].append(image_id)
    groups = [tuple(sorted(ids)) for ids in merged.values() if len(ids) > 1]
    with project.transaction() as s:
        splits.write_groups(s, groups)
    return groups


@dataclass(frozen=True)
class KeptTogether:
    moved: int  # images moved so that their group shares a split
    leaks: splits.GroupLeaks  # what still spans splits (a locked test set is never changed)


def keep_groups_together(project: Project) -> KeptTogether:
    """Refresh the groups and give each one that spans splits one split, chosen as for a new
    image (so the split shares stay on target); groups touching a locked test set stay as
    they are and are reported."""
    refresh_groups(project)
    with project.transaction() as s:
        locked = read_settings(s).test_locked
        before: dict[int, str] = {}
        for group in splits.group_leaks(s).spanning:
            members: dict[int, str] = dict(iter(s.execute(  # type: ignore[arg-type]  # NOT NULL
                select(Image.id, Image.split).where(
                Image.id.in_(group), Image.split.is_not(None)))))
            if not (locked and "test" in members.values()):
                before.update(members)
        if before:
            splits.clear_splits(s, list(before))
            splits.assign_missing_splits(s, list(before))
        after = dict(iter(s.execute(select(Image.id, Image.split).where(
            Image.id.in_(list(before))))))
        leaks = splits.group_leaks(s)
    return KeptTogether(sum(after.get(i) != sp for i, sp in before.items()), leaks)


def resplit(project: Project, ratios: tuple[float, float, float] | None = None,
            seed: int | None = None) -> int:
    """Re-assign every labeled image's split, keeping the groups (refreshed first) together
    (a locked test set stays as it is)."""
    from densestudio.core.store import resplit as store_resplit

    refresh_groups(project)
    return store_resplit(project, ratios, seed)


class _Signatures:
    """High-passed 64x64 grey unit vectors from the thumbnail cache, made on demand."""

    def __init__(self, project: Project) -> None:
        self._project = project
        self._cache = ThumbnailCache(project.cache_dir)
        self._vectors: dict[int, np.ndarray | None] = {}

    def _vector(self, image_id: int) -> np.ndarray | None:
        if image_id not in self._vectors:
            info = self._project.image(image_id)
            data = self._cache.get_or_make(info)
            vec = None
            if data is not None:
                with PILImage.open(io.BytesIO(data)) as img:
                    small = img.convert("L").resize((64, 64), PILImage.Resampling.BILINEAR)
                    blur = small.filter(ImageFilter.BoxBlur(4))
                    arr = (np.asarray(small, np.float32) - np.asarray(blur, np.float32)).ravel()
                arr -= arr.mean()
                norm = float(np.linalg.norm(arr))
                vec = arr / norm if norm > 1e-6 else None
            self._vectors[image_id] = vec
        return self._vectors[image_id]

    def correlation(self, a: int, b: int) -> float:
        va, vb = self._vector(a), self._vector(b)
        if va is None or vb is None:  # flat images: identical only if both are flat
            return 1.0 if va is None and vb is None else 0.0
        return float(va @ vb)

    def close(self) -> None:
        self._cache.close()


def move_together(project: Project, groups: list[NearDuplicateGroup]) -> int:
    """Put each group's images in one split (the one most of them are in; ties: train).

    A locked test set is never changed: a group touching it is refused with a message.
    Returns how many images moved.
    """
    moved = 0
    with project.transaction() as s:
        locked = read_settings(s).test_locked
        for group in groups:
            votes = Counter(group.splits)
            target = max(SPLITS, key=lambda sp: (votes[sp], -SPLITS.index(sp)))
            if locked and "test" in group.splits:
                raise ProjectError("Some near-duplicates involve the locked test set; unlock it "
                                   "first to move them together.")
            ids = [i for i, sp in zip(group.image_ids, group.splits, strict=False) if sp != target]
            set_split(s, ids, target)  # the locked-test rule is enforced there too
            moved += len(ids)
    return moved
