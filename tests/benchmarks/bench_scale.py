"""Scale benchmark: what grows with the project and the team. One function per measurement.

    .venv/bin/python tests/benchmarks/bench_scale.py [--rows 100000] [--url postgresql://...]

Gallery on PostgreSQL vs SQLite at 100k images (``gallery``): the same synthetic project
(rows as in bench_gallery.py: 4 classes, ~60 % labeled, split assigned) in a project file
and in a PostgreSQL database - a throwaway local server from tests/pg_server.py unless
``--url`` names one - then, on each, the store calls the gallery makes:

- open: ``Project.open`` + classes + counts + the id list in display order + the first
  page of rows (what the window needs before it can paint);
- page queries: 50 random jumps (200 rows each by id, as the gallery model fetches them),
  a class-filtered id list sorted by class, a file-name search count;
- a key press: one label change from a view (compare-and-set) and another client's change
  feed picking it up.

Medians of 5 repeats (the jumps: median and worst of 50). The training and memory parts of
issue 14 add their own functions here.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def timed(fn: Callable[[], object], repeats: int = 5) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def build_project(target: str | Path, rows: int) -> float:
    """Create the synthetic project; returns the seconds it took."""
    from densestudio.core.models import utcnow
    from densestudio.core.splits import assign_missing_splits
    from densestudio.core.store import Project, bulk_insert_images

    t0 = time.perf_counter()
    with Project.create(target) as project:
        classes = [project.add_class(n) for n in ("ok", "scratch", "spot", "crack")]
        now, rng = utcnow(), random.Random(0)
        data = []
        for i in range(rows):
            label = classes[i % 4].id if rng.random() < 0.6 else None
            data.append(dict(
                path=f"/bench/line{i // 10000}/part_{i:06d}.png",
                filename=f"part_{i:06d}.png", folder=f"/bench/line{i // 10000}",
                content_hash=f"{i:032x}", byte_size=50_000, width=1024, height=768,
                mode="L", bit_depth=8, added_at=now, missing=False, label_id=label,
                label_source="folder" if label else None,
                labeled_by=("alice", "bob")[i % 2] if label else None,
                labeled_at=now if label else None,
            ))
        with project.transaction() as s:
            for start in range(0, rows, 20_000):
                bulk_insert_images(s, data[start:start + 20_000])
            assign_missing_splits(s)
    return time.perf_counter() - t0


def measure_gallery_open(target: str | Path) -> dict[str, float]:
    """Seconds from nothing to what the gallery needs to paint its first screen."""
    from densestudio.core.store import Project

    def open_gallery() -> None:
        with Project.open(target) as project:
            project.classes()
            project.counts()
            project.counts_by_author()
            ids = project.image_ids(sort="name")
            project.images_by_ids(ids[:200])

    seconds, _ = timed(open_gallery)
    return {"open": seconds}


def measure_page_queries(target: str | Path) -> dict[str, float]:
    from densestudio.core.store import ImageFilter, Project

    with Project.open(target) as project:
        ids = project.image_ids(sort="name")
        rng = random.Random(1)
        jumps = []
        for _ in range(50):
            start = rng.randrange(0, max(len(ids) - 200, 1))
            t0 = time.perf_counter()
            project.images_by_ids(ids[start:start + 200])
            jumps.append(time.perf_counter() - t0)
        crack = project.class_by_name("crack").id
        by_class, _ = timed(lambda: project.image_ids(ImageFilter(class_ids=(crack,)),
                                                      sort="class"))
        search, _ = timed(lambda: project.count_images(ImageFilter(text="part_0421")))
        all_ids, _ = timed(lambda: project.image_ids(sort="name"))
    return {"page (median)": statistics.median(jumps), "page (worst)": max(jumps),
            "ids sorted by name": all_ids, "class filter": by_class, "name search": search}


def measure_label_and_feed(target: str | Path) -> dict[str, float]:
    """One label change from a view (compare-and-set), then another client's feed."""
    from densestudio.core.changes import ChangeFeed
    from densestudio.core.store import Project, Seen

    with Project.open(target) as alice, Project.open(target) as bob:
        feed = ChangeFeed(bob)
        rows = alice.page(limit=50)
        classes = [c.id for c in alice.classes()]
        label_times, feed_times = [], []
        for n, row in enumerate(rows[:20]):
            t0 = time.perf_counter()
            label = next(c for c in classes[n % 4:] + classes if c != row.label_id)
            alice.set_labels([row.id], label, who="alice",
                             expected=Seen({row.id: row.label_version}))
            t1 = time.perf_counter()
            batch = feed.wait(timeout=2.0)
            label_times.append(t1 - t0)
            feed_times.append(time.perf_counter() - t1)
            assert batch is not None and row.id in batch.image_ids
        feed.close()
    return {"label one image": statistics.median(label_times),
            "feed sees it": statistics.median(feed_times)}


def gallery(rows: int, url: str | None, folder: Path) -> dict[str, dict[str, float]]:
    """SQLite vs PostgreSQL: build, open, page, label."""
    targets: dict[str, str | Path] = {"SQLite": folder / "scale.dsproj"}
    server = None
    if url is None:
        from tests import pg_server

        reasons: list[str] = []
        server = pg_server.start(reasons)
        if server is None:
            print(f"PostgreSQL skipped: {reasons[0]}")
        else:
            url = server.url(server.create_database("bench"))
    if url:
        targets["PostgreSQL"] = url
    results: dict[str, dict[str, float]] = {}
    try:
        for name, target in targets.items():
            built = build_project(target, rows)
            figures = {"build": built}
            for measure in (measure_gallery_open, measure_page_queries, measure_label_and_feed):
                figures.update(measure(target))
            results[name] = figures
    finally:
        if server is not None:
            server.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--url", help="an empty PostgreSQL database to use (default: a "
                                      "throwaway local server)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = gallery(args.rows, args.url, Path(tmp))
    names = list(results)
    print(f"\nGallery at {args.rows:,} images (ms, medians)")
    print(f"  {'':<22}" + "".join(f"{n:>12}" for n in names))
    for key in results[names[0]]:
        print(f"  {key:<22}" + "".join(f"{results[n][key] * 1000:>12.1f}" for n in names))


if __name__ == "__main__":
    main()
