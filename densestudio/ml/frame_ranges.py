"""The frame-check ranges of a run (``runtime.frame_checks``), measured on its training
images: written into every exported file (metadata key ``frame_checks``) and used by
Predict unlabeled, so the app and the line flag the same black, blown-out or blurred frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from densestudio.core import preprocess
from densestudio.core.imaging import ImageDecodeError, load_image
from densestudio.core.progress import CancelToken
from densestudio.core.store import Project
from densestudio.runtime.frame_checks import FrameStats, frame_stats, ranges_from

MAX_FRAMES = 2000  # training images measured (every class in proportion beyond that)


def frame_check_ranges(project: Project, run_id: int, meta: dict[str, Any],
                       cancel: CancelToken | None = None) -> dict[str, Any] | None:
    """The ``frame_checks`` metadata entry of run ``run_id`` (None with < 2 readable training
    images). Frames are decoded exactly as the model file decodes them (JPEG draft to the
    canvas's long side), so the file's check sees the same numbers."""
    from densestudio.ml.snapshot import load_snapshot

    snap = load_snapshot(project, run_id)
    train = snap.indices("train")
    if len(train) > MAX_FRAMES:
        ordered = sorted(train, key=lambda i: (snap.labels[i], i))
        step = len(ordered) / MAX_FRAMES
        train = [ordered[int(j * step)] for j in range(MAX_FRAMES)]
    prep = preprocess.from_meta(meta)
    side = max(prep.width, prep.height)
    stats: list[FrameStats] = []
    labels: list[str] = []
    for i in train:
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            img = load_image(Path(snap.items[i].path), max_side=side)
        except (ImageDecodeError, OSError):
            continue  # a missing or broken file: the others define the ranges
        stats.append(frame_stats(img))
        labels.append(snap.class_names[snap.labels[i]])
    return ranges_from(stats, labels) if len(stats) >= 2 else None
