"""The frame-check ranges of a run (``runtime.frame_checks``), measured on its training
images: written into every exported file (metadata key ``frame_checks``) and used by
Predict unlabeled, so the app and the line flag the same black, blown-out or blurred frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densestudio.core import preprocess, runs
from densestudio.core.imaging import ImageDecodeError, load_image
from densestudio.core.progress import CancelToken, EventCallback, Progress, ignore_event
from densestudio.core.store import Project
from densestudio.runtime.frame_checks import FrameChecks, FrameStats, frame_stats, ranges_from

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


# ------------------------------------------------------------------ in the app
EXTRA_RANGES = "frame_checks"  # run extra: the run's frame_checks entry (measured once)
EXTRA_REASONS = "frame_reasons"  # run extra: {image id: reason} of flagged predicted images
EXTRA_CHECKED = "frame_checked"  # run extra: the subsets (val, test) whose frames are checked


@dataclass(frozen=True)
class FramesChecked(Progress):
    """``done`` of ``total`` images' frames checked."""

    run_id: int
    done: int
    total: int


def run_frame_checks(project: Project, run_id: int, meta: dict[str, Any],
                     cancel: CancelToken | None = None) -> FrameChecks | None:
    """The run's frame checks as an export would write them (kept in the run's extra)."""
    entry = runs.get_run(project, run_id).extra.get(EXTRA_RANGES)
    if entry is None:
        entry = frame_check_ranges(project, run_id, meta, cancel)
        if entry is None:
            return None
        runs.update_run_extra(project, run_id, **{EXTRA_RANGES: entry})
    try:
        return FrameChecks.from_meta(entry)
    except ValueError:
        return None


def check_frames(project: Project, run_id: int, images: Sequence[tuple[int, str]],
                 meta: dict[str, Any], cancel: CancelToken | None = None,
                 subset: str | None = None, on_event: EventCallback = ignore_event
                 ) -> dict[int, str]:
    """{image id: reason} for the (id, path) images that fail the run's frame checks,
    decoded as the model file decodes them; stored with the run (replacing earlier
    reasons of these images; ``subset``: remembered as checked) for the Review tab."""
    checks = run_frame_checks(project, run_id, meta, cancel)
    if checks is None:
        return {}
    prep = preprocess.from_meta(meta)
    side = max(prep.width, prep.height)
    found: dict[int, str] = {}
    for n, (image_id, path) in enumerate(images):
        if cancel is not None:
            cancel.raise_if_cancelled()
        if n % 32 == 0:
            on_event(FramesChecked(run_id, n, len(images)))
        try:
            reason = checks.reason(frame_stats(load_image(Path(path), max_side=side)))
        except (ImageDecodeError, OSError):
            continue
        if reason is not None:
            found[image_id] = reason
    checked = {str(i) for i, _ in images}
    stored = {k: v for k, v in frame_reasons(project, run_id).items() if str(k) not in checked}
    stored.update(found)
    changes: dict[str, object] = {EXTRA_REASONS: {str(k): v for k, v in stored.items()}}
    if subset is not None:
        changes[EXTRA_CHECKED] = sorted({*checked_subsets(project, run_id), subset})
    runs.update_run_extra(project, run_id, **changes)
    return found


def check_subset(project: Project, run_id: int, subset: str,
                 cancel: CancelToken | None = None, on_event: EventCallback = ignore_event
                 ) -> dict[int, str]:
    """Run the frame checks on the run's ``subset`` (val or test) images."""
    from densestudio.ml.checkpoint import load_checkpoint
    from densestudio.ml.snapshot import load_snapshot

    info = runs.get_run(project, run_id)
    if not info.checkpoint_best:
        return {}
    meta = load_checkpoint(info.checkpoint_best)["meta"]
    snap = load_snapshot(project, run_id)
    images = [(snap.items[i].image_id, snap.items[i].path) for i in snap.indices(subset)]
    return check_frames(project, run_id, images, meta, cancel, subset=subset,
                        on_event=on_event)


def checked_subsets(project: Project, run_id: int) -> list[str]:
    value = runs.get_run(project, run_id).extra.get(EXTRA_CHECKED) or []
    return [str(v) for v in value] if isinstance(value, list) else []


def frame_reasons(project: Project, run_id: int) -> dict[int, str]:
    """{image id: reason} of the run's predicted images that failed its frame checks."""
    stored = runs.get_run(project, run_id).extra.get(EXTRA_REASONS) or {}
    return {int(k): str(v) for k, v in stored.items()} if isinstance(stored, dict) else {}
