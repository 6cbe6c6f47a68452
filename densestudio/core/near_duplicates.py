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
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFilter
from sqlalchemy import select, update

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
    if not 0 <= max_distance <= BANDS - 1:
        raise ProjectError(f"max_distance must be between 0 and {BANDS - 1}.")
    backfill_hashes(project)
    with project.session() as s:
        rows = list(s.execute(select(Image.id, Image.phash, Image.split).where(
            Image.phash.is_not(None), Image.split.is_not(None))))
    hashes = {i: _unsigned(h) for i, h, _ in rows}  # type: ignore[arg-type]  # NOT NULL by the query
    split_of = {i: sp for i, _, sp in rows}
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
    clusters: dict[int, list[int]] = defaultdict(list)
    for image_id in hashes:
        clusters[find(image_id)].append(image_id)
    groups = []
    for root, ids in clusters.items():
        splits = tuple(split_of[i] for i in sorted(ids))
        if len(set(splits)) > 1:
            groups.append(NearDuplicateGroup(  # splits: NOT NULL by the query
                tuple(sorted(ids)), splits, worst.get(root, 0)))  # type: ignore[arg-type]
    groups.sort(key=lambda g: (not g.crosses_test, -len(g.image_ids)))
    return groups


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
