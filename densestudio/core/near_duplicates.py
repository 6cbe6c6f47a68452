"""Near-identical images across splits: the leak that makes test accuracy lie.

Each image carries a 64-bit difference hash (computed at import). Two images whose hashes
differ in at most ``max_distance`` bits look the same at thumbnail scale (re-saved, re-shot,
slightly shifted). Candidate pairs come from exact matches on one of four 16-bit bands:
with max_distance <= 3, any such pair must agree on at least one band (pigeonhole), so
the search is near-linear instead of comparing all pairs of 100k images.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import select, update

from densestudio.core.errors import ProjectError
from densestudio.core.models import SPLITS, Image
from densestudio.core.splits import read_settings

BANDS = 4


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


def find_cross_split_duplicates(project, max_distance: int = 3) -> list[NearDuplicateGroup]:  # noqa: ANN001
    """Groups of near-identical labeled images that sit in different splits."""
    if not 0 <= max_distance <= BANDS - 1:
        raise ProjectError(f"max_distance must be between 0 and {BANDS - 1}.")
    with project.session() as s:
        rows = list(s.execute(select(Image.id, Image.phash, Image.split).where(
            Image.phash.is_not(None), Image.split.is_not(None))))
    hashes = {i: _unsigned(h) for i, h, _ in rows}
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

    worst: dict[int, int] = {}
    for members in buckets.values():
        if len(members) < 2 or len(members) > 5000:  # flat images: skip degenerate buckets
            continue
        for a_index, a in enumerate(members):
            for b in members[a_index + 1 :]:
                distance = (hashes[a] ^ hashes[b]).bit_count()
                if distance <= max_distance:
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
            groups.append(NearDuplicateGroup(tuple(sorted(ids)), splits, worst.get(root, 0)))
    groups.sort(key=lambda g: (not g.crosses_test, -len(g.image_ids)))
    return groups


def move_together(project, groups: list[NearDuplicateGroup]) -> int:  # noqa: ANN001
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
            ids = [i for i, sp in zip(group.image_ids, group.splits) if sp != target]
            s.execute(update(Image).where(Image.id.in_(ids)).values(split=target))
            moved += len(ids)
    return moved
