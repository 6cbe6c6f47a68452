"""What the labeled data looks like, in plain numbers: the facts training defaults are
chosen from (class sizes and imbalance, image sizes and aspect ratios, colour).

Three aggregate queries (counts per class and split, distinct image sizes, distinct modes),
so it stays fast enough for the GUI thread at 100,000 images.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from densestudio.core.models import Image
from densestudio.core.store import Project

GRAY_MODES = frozenset({"L", "1", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass(frozen=True)
class DataProfile:
    class_names: tuple[str, ...]
    counts: tuple[int, ...]  # labeled, present images per class (all splits)
    train_counts: tuple[int, ...]  # of those, in the train split
    sizes: tuple[tuple[int, int, int], ...]  # (width, height, how many images)
    gray: bool  # every labeled image is grayscale

    @property
    def n_labeled(self) -> int:
        return sum(self.counts)

    @property
    def imbalance(self) -> float:
        """Largest / smallest class (1.0 = balanced; classes without images ignored)."""
        present = [c for c in self.counts if c > 0]
        return max(present) / min(present) if present else 1.0


def data_profile(project: Project) -> DataProfile:
    classes = project.classes()
    index = {c.id: i for i, c in enumerate(classes)}
    counts = [0] * len(classes)
    train = [0] * len(classes)
    labeled = (Image.label_id.is_not(None), Image.missing.is_(False))
    with project.session() as s:
        for label_id, split, n in s.execute(
            select(Image.label_id, Image.split, func.count()).where(*labeled)
            .group_by(Image.label_id, Image.split)
        ):
            counts[index[label_id]] += n  # type: ignore[index]  # the query excludes NULL
            if split == "train":
                train[index[label_id]] += n  # type: ignore[index]  # as above
        sizes = tuple((int(w), int(h), int(n)) for w, h, n in s.execute(
            select(Image.width, Image.height, func.count()).where(*labeled)
            .group_by(Image.width, Image.height)
        ))  # fmt: skip
        modes = set(s.scalars(select(Image.mode).where(*labeled).distinct()))
    return DataProfile(tuple(c.name for c in classes), tuple(counts), tuple(train), sizes,
                       bool(modes) and modes <= GRAY_MODES)
