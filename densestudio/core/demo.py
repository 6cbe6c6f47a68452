"""A ready-to-train demo project from images the app draws itself (no third-party images).

Procedural brushed-metal textures in four classes - ``ok``, ``scratch``, ``spot`` and
``crack`` - a few dozen each at 128 px, written as PNG files into a folder beside the project
and imported with sub-folder names as classes, so a new user can try labeling, training and
review within seconds of starting the app.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from densestudio.core.errors import CancelledError, ProjectError
from densestudio.core.progress import CancelToken, EventCallback, Progress, ignore_event

DEMO_CLASSES = ("ok", "scratch", "spot", "crack")
DEMO_PROJECT_NAME = "DenseStudio demo.dsproj"


@dataclass(frozen=True)
class DemoProgress(Progress):
    """Drawing the demo images (before their import)."""

    done: int
    total: int


def _blur_axis(a: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Box blur along one axis with wrap-around (cheap, via a cumulative sum)."""
    if width <= 1:
        return a
    pad = width // 2
    padded = np.concatenate(
        [np.take(a, range(-pad, 0), axis=axis), a, np.take(a, range(0, width - pad), axis=axis)],
        axis=axis,
    )
    c = np.cumsum(padded, axis=axis, dtype=np.float64)
    n = a.shape[axis]
    hi = np.take(c, range(width, width + n), axis=axis)
    lo = np.take(c, range(0, n), axis=axis)
    return ((hi - lo) / width).astype(np.float32)


def metal_texture(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """Brushed steel: streaky noise along a random direction plus uneven lighting (float 0..255)."""
    noise = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    streak = _blur_axis(_blur_axis(noise, int(rng.integers(9, 25)), 1), 2, 0)
    streak = streak / (streak.std() + 1e-6)
    grain = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * math.pi)
    light = np.cos(angle) * xx + np.sin(angle) * yy
    base = rng.uniform(105, 160)
    img: np.ndarray = base + 11.0 * streak + 4.0 * grain + rng.uniform(10, 30) * (light - 0.5)
    if rng.random() < 0.5:  # brushed vertically on some parts
        img = img.T.copy()
    return img


def _segment_distance(
    xx: np.ndarray, yy: np.ndarray, p: tuple[float, float], q: tuple[float, float]
) -> np.ndarray:
    px, py = p
    dx, dy = q[0] - px, q[1] - py
    length2 = dx * dx + dy * dy or 1e-6
    t = np.clip(((xx - px) * dx + (yy - py) * dy) / length2, 0.0, 1.0)
    return np.hypot(xx - (px + t * dx), yy - (py + t * dy))


def _draw_polyline(
    img: np.ndarray, points: Sequence[tuple[float, float]], width: float, delta: float
) -> None:
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.full(img.shape, np.inf, dtype=np.float32)
    for p, q in itertools.pairwise(points):
        dist = np.minimum(dist, _segment_distance(xx, yy, p, q))
    img += delta * np.exp(-((dist / width) ** 2))


def add_scratch(img: np.ndarray, rng: np.random.Generator) -> None:
    size = img.shape[0]
    for _ in range(int(rng.integers(1, 3))):
        angle = rng.uniform(0, math.pi)
        length = rng.uniform(0.5, 1.1) * size
        cx, cy = rng.uniform(0.25, 0.75, 2) * size
        dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
        # A slight bow so scratches look drawn by a tool, not by a ruler.
        bow = rng.uniform(-0.08, 0.08) * length
        mid = (cx - dy / length * bow * 2, cy + dx / length * bow * 2)
        pts = [(cx - dx, cy - dy), mid, (cx + dx, cy + dy)]
        sign = 1.0 if rng.random() < 0.7 else -1.0
        _draw_polyline(img, pts, rng.uniform(0.7, 1.4), sign * rng.uniform(45, 80))


def add_spots(img: np.ndarray, rng: np.random.Generator) -> None:
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0.12, 0.88, 2) * size
        rx, ry = rng.uniform(2.5, 9.0), rng.uniform(2.5, 9.0)
        r2 = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
        img -= rng.uniform(40, 85) * np.exp(-(r2**2))
        img += 12.0 * np.exp(-((np.sqrt(r2) - 1.3) ** 2) * 6)  # faint bright rim


def add_crack(img: np.ndarray, rng: np.random.Generator) -> None:
    size = img.shape[0]

    def walk(x: float, y: float, heading: float, steps: int) -> list[tuple[float, float]]:
        pts = [(x, y)]
        for _ in range(steps):
            heading += rng.normal(0, 0.45)
            step = rng.uniform(3.0, 6.0)
            x, y = x + math.cos(heading) * step, y + math.sin(heading) * step
            pts.append((x, y))
        return pts

    start = rng.uniform(0.2, 0.8, 2) * size
    heading = rng.uniform(0, 2 * math.pi)
    main = walk(float(start[0]), float(start[1]), heading, int(rng.integers(14, 24)))
    _draw_polyline(img, main, rng.uniform(0.6, 1.0), -rng.uniform(70, 100))
    for _ in range(int(rng.integers(0, 3))):
        bx, by = main[int(rng.integers(2, len(main) - 2))]
        branch = walk(bx, by, heading + rng.choice([-1, 1]) * rng.uniform(0.6, 1.2), 6)
        _draw_polyline(img, branch, 0.6, -rng.uniform(45, 70))


_DEFECTS = {"ok": None, "scratch": add_scratch, "spot": add_spots, "crack": add_crack}


def demo_image(kind: str, rng: np.random.Generator, size: int = 128) -> Image.Image:
    img = metal_texture(rng, size)
    draw = _DEFECTS[kind]
    if draw is not None:
        draw(img, rng)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L")


def make_demo_images(
    folder: Path,
    per_class: int = 30,
    size: int = 128,
    seed: int = 0,
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
) -> list[Path]:
    """Write ``per_class`` PNGs per demo class into ``folder/<class>/``; returns their paths."""
    cancel = cancel or CancelToken()
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    total = per_class * len(DEMO_CLASSES)
    for kind in DEMO_CLASSES:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cancel.raise_if_cancelled()
            path = folder / kind / f"{kind}_{i + 1:03d}.png"
            demo_image(kind, rng, size).save(path, optimize=False)
            paths.append(path)
            if len(paths) % 10 == 0 or len(paths) == total:
                on_event(DemoProgress(len(paths), total))
    return paths


def demo_images_folder(project_path: Path) -> Path:
    return project_path.with_name(project_path.stem + " images")


def create_demo_project(
    project_path: Path,
    per_class: int = 30,
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
) -> Path:
    """Draw the demo images beside ``project_path``, create the project and import them.

    Returns the project path (an existing demo project is left as it is and reused).
    """
    from densestudio.core.importer import ImportOptions, run_import
    from densestudio.core.store import Project

    project_path = Path(project_path)
    if project_path.exists():
        return project_path
    folder = demo_images_folder(project_path)
    make_demo_images(folder, per_class, on_event=on_event, cancel=cancel)
    try:
        with Project.create(project_path) as project:
            report = run_import(
                project, [folder], ImportOptions(labels_from_subfolders=True), on_event, cancel
            )
    except BaseException:
        _remove_project(project_path)
        raise
    if report.cancelled:
        _remove_project(project_path)
        raise CancelledError("Cancelled by the user.")
    if report.added == 0 and not report.already_in_project:
        raise ProjectError(f"The demo images could not be imported: {report.summary()}")
    return project_path


def _remove_project(project_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(project_path) + suffix).unlink(missing_ok=True)
