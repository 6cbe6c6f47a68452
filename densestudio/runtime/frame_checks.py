"""Frame checks: is this frame fit to be judged at all? (numpy only; no torch)

Vision systems check the frame before they judge the part. A lens cap, a flash that fired
twice, a camera out of focus or an empty grey belt must never get a confident OK/NG, and a
classifier's features do not reliably separate such frames (its training never showed
them). So every exported file carries, from its training images, the accepted range of a
few simple frame statistics (metadata key ``frame_checks``), per class; a frame that fits
no class's ranges is UNSURE with a reason, whatever the classifier says.

The statistics are computed on the decoded frame (as the model file decodes it, before
its preprocessing) in grey levels (Pillow's luma), its long side resized to at most
``WORK_SIDE`` px, so sharpness is measured at a fixed working size whatever the model's
input size (at 64 px a blurred texture still looks sharp). The Node.js runner
(packaging/examples/node) computes the same numbers:

- ``p01``, ``p50``, ``p99``: brightness percentiles (the k-th smallest value, k = floor(q *
  (n - 1)), of the grey levels);
- ``std``: contrast, the population standard deviation of the grey levels;
- ``dark``, ``bright``: share of clipped pixels (grey <= 5, grey >= 250);
- ``sharpness``: variance of the 4-neighbour Laplacian (inner pixels) divided by the
  variance of the grey levels, so it measures focus rather than contrast (a flat frame,
  std < 2, is not judged on it);
- ``aspect``: log2 of the decoded image's width / height.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

STATS = ("p01", "p50", "p99", "std", "dark", "bright", "sharpness", "aspect")
DARK_LEVEL, BRIGHT_LEVEL = 5, 250
FLAT_STD = 2.0  # below it a frame is flat and its sharpness means nothing
# Accepted range = training [min, max] widened by MARGIN x the training's 5-95 % spread and
# by at least FLOOR (absolute units), so the known images' own tails stay inside.
MARGIN = 0.1
FLOOR = {"p01": 4.0, "p50": 6.0, "p99": 4.0, "std": 1.0, "dark": 0.03, "bright": 0.03,
         "sharpness": 0.0, "aspect": 0.15}
SHARPNESS_FACTOR = 1.5  # sharpness range: training min / 1.5 .. max * 1.5
TOO_DARK, OVEREXPOSED, OUT_OF_FOCUS, FLAT, UNLIKE = (
    "too dark", "overexposed", "out of focus", "flat", "unlike the training images")
# (statistic, side) -> reason; the first reason in PRIORITY among a frame's violations wins
# (a missing dark end, p01 high, is low contrast rather than overexposure: no reason of its own)
REASONS = {("p50", "low"): TOO_DARK, ("dark", "high"): TOO_DARK,
           ("p50", "high"): OVEREXPOSED, ("bright", "high"): OVEREXPOSED,
           ("sharpness", "low"): OUT_OF_FOCUS, ("std", "low"): FLAT}
PRIORITY = (TOO_DARK, OVEREXPOSED, OUT_OF_FOCUS, FLAT, UNLIKE)
VERSION = 1
WORK_SIDE = 256  # sharpness and the rest are measured at this long side (or less)


@dataclass(frozen=True)
class FrameStats:
    p01: float
    p50: float
    p99: float
    std: float
    dark: float
    bright: float
    sharpness: float
    aspect: float


def working_grey(img: Image.Image) -> np.ndarray:
    """The decoded frame as grey levels (Pillow's luma), long side at most ``WORK_SIDE``
    (bilinear, antialiased; smaller frames as they are): float64 H x W."""
    grey = img.convert("L") if img.mode != "L" else img
    scale = WORK_SIDE / max(grey.width, grey.height)
    if scale < 1:
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float64)


def frame_stats(img: Image.Image) -> FrameStats:
    """Statistics of a decoded frame (as the model file decodes it, before preprocessing)."""
    return stats_of_grey(working_grey(img), img.width, img.height)


def stats_of_grey(grey: np.ndarray, width: int, height: int) -> FrameStats:
    h, w = grey.shape
    flat = np.sort(grey, axis=None)
    n = flat.size

    def pct(q: float) -> float:
        return float(flat[math.floor(q * (n - 1))])

    std = float(grey.std())
    if h >= 3 and w >= 3:
        lap = (4.0 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1]
               - grey[1:-1, :-2] - grey[1:-1, 2:])
        sharp = float(lap.var()) / (std * std) if std > 0 else 0.0
    else:
        sharp = 0.0
    return FrameStats(
        p01=pct(0.01), p50=pct(0.5), p99=pct(0.99), std=std,
        dark=float((grey <= DARK_LEVEL).mean()), bright=float((grey >= BRIGHT_LEVEL).mean()),
        sharpness=sharp, aspect=math.log2(max(1, width) / max(1, height)),
    )  # fmt: skip


def _box(stats: Sequence[FrameStats]) -> dict[str, list[float]]:
    table = np.array([[getattr(s, k) for k in STATS] for s in stats], dtype=np.float64)
    ranges = {}
    for j, key in enumerate(STATS):
        col = table[:, j]
        spread = float(np.quantile(col, 0.95) - np.quantile(col, 0.05))
        widen = max(MARGIN * spread, FLOOR[key])
        lo, hi = float(col.min()) - widen, float(col.max()) + widen
        if key == "sharpness":  # a ratio: widened by a factor
            lo, hi = float(col.min()) / SHARPNESS_FACTOR, float(col.max()) * SHARPNESS_FACTOR
        if key in ("dark", "bright"):
            lo, hi = 0.0, min(1.0, hi)
        ranges[key] = [round(lo, 6), round(hi, 6)]
    return ranges


def ranges_from(stats: Sequence[FrameStats], labels: Sequence[str] | None = None
                ) -> dict[str, Any]:
    """The metadata entry (``frame_checks``) for these training frames' statistics: one box
    of ranges over all frames and, with ``labels``, one per class (a frame passes when it
    fits one class's box: a bright flat frame is unlike every class even where one class is
    bright and another flat)."""
    by_class: dict[str, dict[str, list[float]]] = {}
    if labels is not None:
        for name in sorted(set(labels)):
            mine = [s for s, lab in zip(stats, labels, strict=True) if lab == name]
            if len(mine) >= 2:
                by_class[name] = _box(mine)
    return {
        "version": VERSION, "n": len(stats), "work_side": WORK_SIDE, "ranges": _box(stats),
        "by_class": by_class,
        "levels": {"dark": DARK_LEVEL, "bright": BRIGHT_LEVEL, "flat_std": FLAT_STD},
        "method": ("statistics of the decoded frame in grey levels (Pillow luma), long side "
                   "resized (bilinear) to at most work_side: p01/p50/p99 brightness "
                   "percentiles, std, share of pixels <= dark / >= bright, sharpness = "
                   "var(4-neighbour Laplacian) / var(grey) (not checked when std < flat_std), "
                   "aspect = log2(width / height); accepted range = the training images' "
                   "min/max widened, per class (by_class) and over all"),
        "rule": ("UNSURE when the frame fits no class's ranges (by_class; without them, "
                 "'ranges'); the reason comes from the statistics outside 'ranges' or, when "
                 "none is, from those outside the nearest class's ranges"),
    }  # fmt: skip


def _parse_box(ranges: object) -> dict[str, tuple[float, float]]:
    if not isinstance(ranges, dict):
        raise ValueError("'frame_checks' ranges are not a table")
    out = {}
    for key, value in ranges.items():
        if key not in STATS:
            continue  # a newer statistic this version does not know: not checked
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in value) or value[0] > value[1]):
            raise ValueError(f"frame check range of '{key}' is not [low, high]")
        out[key] = (float(value[0]), float(value[1]))
    return out


@dataclass(frozen=True)
class FrameChecks:
    """Accepted ranges of ``FrameStats`` (from a model file's ``frame_checks``): a frame is
    fine when it fits one of ``boxes``."""

    boxes: tuple[dict[str, tuple[float, float]], ...]
    overall: dict[str, tuple[float, float]] | None = None  # over all training frames

    @classmethod
    def from_meta(cls, entry: object) -> FrameChecks | None:
        """None for files made before frame checks; ValueError for a malformed entry."""
        if entry is None:
            return None
        if not isinstance(entry, dict):
            raise ValueError("'frame_checks' is not a table")
        by_class = entry.get("by_class") or {}
        if not isinstance(by_class, dict):
            raise ValueError("'frame_checks' by_class is not a table")
        overall = _parse_box(entry.get("ranges"))
        boxes = [_parse_box(b) for b in by_class.values()] or [overall]
        return cls(tuple(boxes), overall)

    @staticmethod
    def _violations(box: dict[str, tuple[float, float]], stats: FrameStats
                    ) -> list[tuple[str, str]]:
        out = []
        for key, (lo, hi) in box.items():
            if key == "sharpness" and stats.std < FLAT_STD:
                continue
            value = getattr(stats, key)
            if value < lo:
                out.append((key, "low"))
            elif value > hi:
                out.append((key, "high"))
        return out

    def violations(self, stats: FrameStats) -> list[tuple[str, str]]:
        """(statistic, "low" | "high"): empty when the frame fits a box; else those outside
        the ranges over all training frames (no training frame is that dark, that flat,
        ...) or, when it is inside those, outside the nearest box (fewest violations; the
        first on a tie)."""
        best: list[tuple[str, str]] | None = None
        for box in self.boxes:
            found = self._violations(box, stats)
            if not found:
                return []
            if best is None or len(found) < len(best):
                best = found
        overall = self._violations(self.overall, stats) if self.overall else []
        return overall or best or []

    def reason(self, stats: FrameStats) -> str | None:
        """Why this frame should not be judged (None: it looks like the training frames)."""
        found = {REASONS.get(v, UNLIKE) for v in self.violations(stats)}
        return next((r for r in PRIORITY if r in found), None)


NAMES = {"p01": "1st-percentile brightness", "p50": "median brightness",
         "p99": "99th-percentile brightness", "std": "contrast (std)",
         "dark": f"share of pixels <= {DARK_LEVEL}", "bright": f"share of pixels >= {BRIGHT_LEVEL}",
         "sharpness": "sharpness (Laplacian / contrast)", "aspect": "aspect log2(w/h)"}


def describe(entry: dict[str, Any]) -> list[str]:
    """One line per checked statistic over all training frames, for people (report, CLI)."""
    ranges = entry.get("ranges", {}) if isinstance(entry, dict) else {}
    return [f"{NAMES.get(k, k)}: {lo:.4g} .. {hi:.4g}" for k, (lo, hi) in ranges.items()]
