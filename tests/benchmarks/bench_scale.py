"""Scale benchmarks (issue 14): what grows with the project, the team and the hardware.
One function per measurement; ``main`` runs the chosen ones (default: all).

    .venv/bin/python tests/benchmarks/bench_scale.py                  # all of them
    .venv/bin/python tests/benchmarks/bench_scale.py --only gallery [--rows 100000] [--url postgresql://...]
    .venv/bin/python tests/benchmarks/bench_scale.py --only rss_200k --images 200000
    .venv/bin/python tests/benchmarks/bench_scale.py --only train_processes

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

Medians of 5 repeats (the jumps: median and worst of 50).

- ``train_processes``: training images/s of one run in 1 process vs 2 processes
  (``torchrun --nproc-per-node 2``, Gloo) on this CPU, same global batch, read from the
  run's epoch rows (epochs after the first, which includes warm-up).
- ``rss_200k``: peak resident memory (ru_maxrss) of training a synthetic 200,000-image
  project at 128 px from the on-disk decoded-image cache. The cache (3.3 GB of uint8 rows,
  grayscale) is written directly, as a finished decode would leave it, so the figure is
  the engine's memory, not JPEG decoding's. A child process runs ``fit`` (snapshot of
  200k rows, normalization statistics, training steps; cancelled after ``--steps``) and
  then reads every image of the project once in training order, batch by batch, as an
  epoch and the evaluation do; it prints its peak RSS and how fast the pass read.

Each measurement is a function ``name(args, tmp)``; add one to MEASUREMENTS to extend.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def load_line() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg()) + \
        f" on {os.cpu_count()} cores"


# ------------------------------------------------------------------ 1 vs 2 processes
def _train_cmd(project: Path, name: str, processes: int, args: argparse.Namespace) -> list[str]:
    train = ["-m", "densestudio", "train", str(project), "--arch", "densenet_bc_tiny",
             "--img-size", str(args.size), "--epochs", str(args.epochs), "--batch-size",
             str(args.batch), "--augment", "light", "--no-tta", "--device", "cpu",
             "--offline", "--name", name]  # fmt: skip
    if processes == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(processes), *train]  # fmt: skip


def train_processes(args: argparse.Namespace, tmp: Path) -> None:
    from densestudio.core import runs
    from densestudio.core.store import Project
    from tests.ml.conftest import add_images, write_images

    path = tmp / "speed.dsproj"
    with Project.create(path) as project:
        add_images(project, write_images(tmp / "imgs", args.per_class, size=args.size))
    cases = [("1 process x 2 threads", 1, None), ("2 processes x 1 thread", 2, "1"),
             ("1 process x 1 thread", 1, "1")]  # fmt: skip
    print(f"[train] {3 * args.per_class} images at {args.size} px, densenet_bc_tiny, global "
          f"batch {args.batch}, {args.epochs} epochs; {load_line()}", flush=True)
    results: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    for rep in range(args.repeats):  # interleaved: a busy machine slows every case alike
        for label, processes, threads in cases:
            env = dict(os.environ)
            env.pop("OMP_NUM_THREADS", None)
            if threads:
                env["OMP_NUM_THREADS"] = threads
            name = f"{label} #{rep}"
            subprocess.run(_train_cmd(path, name, processes, args), cwd=ROOT, env=env,
                           check=True, capture_output=True)  # fmt: skip
            with Project.open(path) as project:
                run = next(r for r in runs.list_runs(project) if r.name == name)
                later = [m.images_per_s for m in runs.epoch_metrics(project, run.id)][1:]
            results[label].append(statistics.mean(later))
            print(f"[train]   {label:<24} {results[label][-1]:6.0f} images/s", flush=True)
    base = statistics.median(results[cases[0][0]])
    for label, values in results.items():
        med = statistics.median(values)
        print(f"[train] {label:<24} median {med:6.0f} images/s ({med / base:.2f}x)")
    print(f"[train] {load_line()}")


# ------------------------------------------------------------------ 200k images, RSS
RSS_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from pathlib import Path
from densestudio.core.progress import CancelToken
from densestudio.core.store import Project
from densestudio.ml import data as D
from densestudio.ml.config import TrainConfig
from densestudio.ml.events import BatchProgress
from densestudio.ml.snapshot import load_snapshot
from densestudio.ml.train import fit

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

cfg = TrainConfig.from_json(sys.argv[2])
steps = int(sys.argv[3])
project = Project.open(Path(sys.argv[1]))
cancel = CancelToken()
seen = {}
def on_event(e):
    if isinstance(e, BatchProgress):
        seen["step_s"] = e.images_per_s
        if e.step >= steps:
            cancel.cancel()
t = time.perf_counter()
run_id = fit(project, cfg, on_event, cancel)
fit_s = time.perf_counter() - t
after_fit = rss_mb()
# Every image once, in a training epoch's random order, batch by batch.
snap = load_snapshot(project, run_id)
pixels, failures = D.DecodedCache(project.cache_dir).load(snap.items, cfg.preprocessing("L"))
order = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(0))
t = time.perf_counter()
checksum = 0
for start in range(0, len(order), cfg.batch_size):
    checksum += int(pixels[order[start:start + cfg.batch_size]][:, 0, 0, 0].sum())
pass_s = time.perf_counter() - t
print(json.dumps({"fit_s": fit_s, "rss_after_fit_mb": after_fit, "pass_s": pass_s,
                  "images": len(pixels), "failures": len(failures),
                  "peak_rss_mb": rss_mb(), "train_images_per_s": seen.get("step_s")}))
"""


def _synthetic_project(path: Path, n: int, classes: int = 3):  # noqa: ANN202
    from densestudio.core.store import Project, bulk_insert_images

    project = Project.create(path)
    ids = [project.add_class(f"class {c}").id for c in range(classes)]
    splits = ("train",) * 14 + ("val",) * 3 + ("test",) * 3
    with project.transaction() as s:
        for start in range(0, n, 20_000):
            bulk_insert_images(s, [dict(
                path=f"/line/lot{i // 1000:04d}/part_{i:07d}.png", filename=f"part_{i:07d}.png",
                folder=f"/line/lot{i // 1000:04d}", content_hash=f"{i:032x}", byte_size=20_000,
                width=128, height=128, mode="L", label_id=ids[i % classes],
                label_source="human", split=splits[i % len(splits)],
            ) for i in range(start, min(n, start + 20_000))])  # fmt: skip
    return project


def _write_cache(folder: Path, n: int, row_bytes: int) -> None:
    """The cache a finished decode leaves: rows, then their index records (see
    ml/decoded_cache.py). Pixel values are noise (training speed does not depend on them)."""
    from densestudio.ml.decoded_cache import RECORD

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    block_rows = 4096
    block = rng.integers(0, 256, size=block_rows * row_bytes, dtype=np.uint8).tobytes()
    with open(folder / "pixels.u8", "wb") as f:
        for start in range(0, n, block_rows):
            f.write(block[: min(block_rows, n - start) * row_bytes])
    hashes = np.array([f"{i:032x}".encode() for i in range(n)], dtype=f"S{RECORD}")
    (folder / "index.bin").write_bytes(hashes.tobytes())


def rss_200k(args: argparse.Namespace, tmp: Path) -> None:
    from densestudio.ml import data as D
    from densestudio.ml.config import TrainConfig

    n = args.images
    cfg = TrainConfig(arch="densenet_bc_tiny", img_size=128, epochs=1, batch_size=32,
                      augment="light", ema=False, tta=False, device="cpu", seed=0,
                      name="rss")  # fmt: skip
    prep = cfg.preprocessing("L")
    t = time.perf_counter()
    project = _synthetic_project(tmp / "big.dsproj", n)
    folder = D.DecodedCache(project.cache_dir).folder(prep)
    _write_cache(folder, n, prep.channels * prep.height * prep.width)
    size_gb = (folder / "pixels.u8").stat().st_size / 1e9
    project.close()
    print(f"[rss] {n} images, {prep.describe()}: project + {size_gb:.2f} GB cache written in "
          f"{time.perf_counter() - t:.0f} s; {load_line()}", flush=True)
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, str(tmp / "big.dsproj"),
                          cfg.to_json(), str(args.steps)],
                         cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    if out.returncode:
        raise SystemExit(out.stderr)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    held = n * prep.channels * prep.height * prep.width / 1e6
    print(f"[rss] fit (snapshot, statistics, {args.steps} steps at "
          f"{r['train_images_per_s'] or 0:.0f} images/s): {r['fit_s']:.0f} s, peak RSS "
          f"{r['rss_after_fit_mb']:.0f} MB")
    print(f"[rss] then every image read once in random order, batch {cfg.batch_size}: "
          f"{r['pass_s']:.0f} s ({r['images'] / r['pass_s']:.0f} images/s, "
          f"{r['images'] * prep.channels * prep.height * prep.width / r['pass_s'] / 1e6:.0f} "
          f"MB/s)")
    print(f"[rss] peak RSS {r['peak_rss_mb']:.0f} MB (goal < 2000 MB; the pixels alone are "
          f"{held:.0f} MB, which an in-memory cache would hold); {load_line()}")


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


def gallery_figures(args: argparse.Namespace, tmp: Path) -> None:
    results = gallery(args.rows, args.url, tmp)
    names = list(results)
    print(f"\nGallery at {args.rows:,} images (ms, medians)")
    print(f"  {'':<22}" + "".join(f"{n:>12}" for n in names))
    for key in results[names[0]]:
        print(f"  {key:<22}" + "".join(f"{results[n][key] * 1000:>12.1f}" for n in names))


MEASUREMENTS = {"gallery": gallery_figures, "train_processes": train_processes,
                "rss_200k": rss_200k}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(MEASUREMENTS),
                        help="run only these measurements (default: all)")
    parser.add_argument("--rows", type=int, default=100_000, help="gallery: project size")
    parser.add_argument("--url", help="gallery: an empty PostgreSQL database to use "
                                      "(default: a throwaway local server)")
    parser.add_argument("--images", type=int, default=200_000, help="rss_200k: project size")
    parser.add_argument("--steps", type=int, default=40, help="rss_200k: training steps")
    parser.add_argument("--per-class", type=int, default=300,
                        help="train_processes: images per class (3 classes)")
    parser.add_argument("--size", type=int, default=64, help="train_processes: image size")
    parser.add_argument("--batch", type=int, default=32, help="train_processes: global batch")
    parser.add_argument("--epochs", type=int, default=3, help="train_processes: epochs")
    parser.add_argument("--repeats", type=int, default=2, help="train_processes: repetitions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ds-scale-", dir=os.environ.get("TMPDIR")) as tmp:
        for name in args.only or list(MEASUREMENTS):
            MEASUREMENTS[name](args, Path(tmp))


if __name__ == "__main__":
    main()
