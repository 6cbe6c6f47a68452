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
  std < 2, is never called out of focus);
- ``aspect``: log2 of the decoded image's width / height.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from densestudio.core.imaging import to_display_mode

STATS = ("p01", "p50", "p99", "std", "dark", "bright", "sharpness", "aspect")
DARK_LEVEL, BRIGHT_LEVEL = 5, 250
FLAT_STD = 2.0  # below it a frame is flat and its sharpness means nothing
FLAT_DARK, FLAT_BRIGHT = 20, 235  # a flat frame this dark / bright is too dark / overexposed
# Accepted range = training [min, max] widened by MARGIN x the training's 5-95 % spread and
# by at least FLOOR (absolute units), so the known images' own tails stay inside.
MARGIN = 0.1
FLOOR = {"p01": 4.0, "p50": 6.0, "p99": 4.0, "std": 1.0, "dark": 0.03, "bright": 0.03,
         "sharpness": 0.0, "aspect": 0.15}
SHARPNESS_FACTOR = 1.5  # sharpness range: training min / 1.5 .. max * 1.5
SMALL_CLASS = 20  # a class with fewer training frames gets wider ranges: by SMALL_WIDEN x
SMALL_WIDEN = 0.5  # the 5-95 % spread of all frames (see _box)
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
    img = to_display_mode(img)  # 16-bit windowed as the model sees it, not clipped
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


def _spreads(stats: Sequence[FrameStats]) -> np.ndarray:
    table = np.array([[getattr(s, k) for k in STATS] for s in stats], dtype=np.float64)
    return np.quantile(table, 0.95, axis=0) - np.quantile(table, 0.05, axis=0)


def _box(stats: Sequence[FrameStats], overall: np.ndarray | None = None
         ) -> dict[str, list[float]]:
    """Ranges of ``stats``; a class with fewer than SMALL_CLASS frames has not shown its
    spread yet, so it is widened by ``overall`` (all frames' 5-95 % spreads) x SMALL_WIDEN
    and its sharpness by SHARPNESS_FACTOR squared."""
    table = np.array([[getattr(s, k) for k in STATS] for s in stats], dtype=np.float64)
    small = overall is not None and len(stats) < SMALL_CLASS
    spreads = _spreads(stats)
    ranges = {}
    for j, key in enumerate(STATS):
        col = table[:, j]
        widen = max(MARGIN * float(spreads[j]), FLOOR[key])
        factor = SHARPNESS_FACTOR
        if small and overall is not None:
            widen = max(widen, SMALL_WIDEN * float(overall[j]))
            factor = SHARPNESS_FACTOR**2
        lo, hi = float(col.min()) - widen, float(col.max()) + widen
        if key == "sharpness":  # a ratio: widened by a factor
            lo, hi = float(col.min()) / factor, float(col.max()) * factor
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
            by_class[name] = _box(mine, _spreads(stats))
    return {
        "version": VERSION, "n": len(stats), "work_side": WORK_SIDE, "ranges": _box(stats),
        "by_class": by_class,
        "levels": {"dark": DARK_LEVEL, "bright": BRIGHT_LEVEL, "flat_std": FLAT_STD,
                   "flat_dark": FLAT_DARK, "flat_bright": FLAT_BRIGHT},
        "method": ("statistics of the decoded frame in grey levels (Pillow luma), long side "
                   "resized (bilinear) to at most work_side: p01/p50/p99 brightness "
                   "percentiles, std, share of pixels <= dark / >= bright, sharpness = "
                   "var(4-neighbour Laplacian) / var(grey) (its low side not checked when std < "
                   "flat_std), "
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
            value = getattr(stats, key)
            if value < lo and key == "sharpness" and stats.std < FLAT_STD:
                continue  # a flat frame is flat, not out of focus (noise alone is sharp)
            if value < lo:
                out.append((key, "low"))
            elif value > hi:
                out.append((key, "high"))
        return out

    def reason(self, stats: FrameStats) -> str | None:
        """Why this frame should not be judged (None: it fits one class's ranges).

        The reason names what no training frame shows (outside the ranges over all of
        them: a grey frame between a dark and a bright class is flat, not too dark), else
        what the nearest class (fewest violations; the first on a tie) does not show, else
        "unlike the training images"."""
        nearest: list[tuple[str, str]] | None = None
        for box in self.boxes:
            found = self._violations(box, stats)
            if not found:
                return None
            if nearest is None or len(found) < len(nearest):
                nearest = found
        overall = self._violations(self.overall, stats) if self.overall else []
        for found in (overall, nearest or []):
            named = {REASONS[v] for v in found if v in REASONS}
            first = next((r for r in PRIORITY if r in named), None)
            if first == FLAT and stats.p50 <= FLAT_DARK:
                return TOO_DARK  # a flat black frame: a lens cap, no light
            if first == FLAT and stats.p50 >= FLAT_BRIGHT:
                return OVEREXPOSED  # a flat white frame: blown out
            if first is not None:
                return first
        return UNLIKE


NAMES = {"p01": "1st-percentile brightness", "p50": "median brightness",
         "p99": "99th-percentile brightness", "std": "contrast (std)",
         "dark": f"share of pixels <= {DARK_LEVEL}", "bright": f"share of pixels >= {BRIGHT_LEVEL}",
         "sharpness": "sharpness (Laplacian / contrast)", "aspect": "aspect log2(w/h)"}


def describe(entry: dict[str, Any]) -> list[str]:
    """One line per checked statistic over all training frames, for people (report, CLI)."""
    ranges = entry.get("ranges", {}) if isinstance(entry, dict) else {}
    return [f"{NAMES.get(k, k)}: {lo:.4g} .. {hi:.4g}" for k, (lo, hi) in ranges.items()]
