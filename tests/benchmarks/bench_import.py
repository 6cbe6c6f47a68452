"""Import and query benchmark (issue: foundation).

    .venv/bin/python tests/benchmarks/bench_import.py [--small 10000] [--large 500] [--rows 100000]
    .venv/bin/python tests/benchmarks/bench_import.py --small 3000 --large 0 --rows 0 --repeats 3

1. Generates N synthetic 256x256 JPEGs and M 4000x3000 JPEGs in a temp folder, imports each set
   into a fresh project in a child process, and prints images/s and the child's peak RSS,
   beside the simplest single-threaded loop over the same files (``REFERENCE``).
   To keep generation time sane, each set is made of distinct base images and copies that
   differ only by a JPEG comment segment: every file has its own content hash and is fully
   decoded like any other, so the import does exactly the work of distinct images.
2. Builds a 100,000-image project and times filtered page queries (200 rows).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def with_comment(jpeg: bytes, text: str) -> bytes:
    body = text.encode()
    segment = b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body
    return jpeg[:2] + segment + jpeg[2:]


def base_jpeg(rng: np.random.Generator, size: tuple[int, int]) -> bytes:
    w, h = size
    small = rng.integers(0, 256, size=(max(4, h // 32), max(4, w // 32), 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)
    arr = np.asarray(img).astype(np.int16)
    arr += rng.integers(-12, 13, size=arr.shape, dtype=np.int16)  # sensor-like grain
    out = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def generate(folder: Path, count: int, size: tuple[int, int], bases: int) -> int:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    base_bytes = [base_jpeg(rng, size) for _ in range(min(bases, count))]
    total = 0
    for i in range(count):
        data = with_comment(base_bytes[i % len(base_bytes)], f"copy {i}")
        (folder / f"img_{i:06d}.jpg").write_bytes(data)
        total += len(data)
    return total


CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from densestudio.core.store import Project
from densestudio.core.importer import run_import
project = Project.create(Path(sys.argv[1]))
cpu = time.process_time()
t = time.perf_counter()
report = run_import(project, [Path(sys.argv[2])])
seconds = time.perf_counter() - t
cpu = time.process_time() - cpu
print(json.dumps({"cpu_s": cpu, "added": report.added, "skipped": len(report.skipped),
                  "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


# The simplest import one could write: one thread reads, SHA-256-hashes, decodes and writes
# a 256 px JPEG thumbnail of each file (no database, no duplicate check, no dHash). The
# importer has to beat it (issue 14: >= 1.5x on 2 cores).
REFERENCE = r"""
import hashlib, io, json, resource, sys, time
from pathlib import Path
from PIL import Image
out = Path(sys.argv[1])
out.mkdir()
files = sorted(Path(sys.argv[2]).iterdir())
cpu = time.process_time()
t = time.perf_counter()
for f in files:
    data = f.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        img.thumbnail((256, 256))
        img.save(out / (digest + ".jpg"), "JPEG", quality=85)
seconds = time.perf_counter() - t
cpu = time.process_time() - cpu
print(json.dumps({"cpu_s": cpu, "added": len(files), "skipped": 0, "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def import_in_child(project: Path, folder: Path, code: str = CHILD) -> dict:
    out = subprocess.run([sys.executable, "-c", code, str(project), str(folder)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_import(
    tmp: Path, label: str, count: int, size: tuple[int, int], bases: int, repeats: int = 1
) -> None:
    """Import the generated folder into a fresh project, and run the reference loop over
    it, alternately ``repeats`` times (a busy machine slows both alike); medians."""
    folder = tmp / label
    t = time.perf_counter()
    nbytes = generate(folder, count, size, bases)
    gen = time.perf_counter() - t
    print(f"[{label}] generated {count} x {size[0]}x{size[1]} JPEGs "
          f"({nbytes / 1e6:.0f} MB) in {gen:.1f} s", flush=True)
    rates: dict[str, list[float]] = {"import": [], "reference loop": []}
    for rep in range(repeats):
        result = import_in_child(tmp / f"{label}-{rep}.dsproj", folder)
        rates["import"].append(result["added"] / result["seconds"])
        print(f"[{label}] imported {result['added']} images in {result['seconds']:.1f} s: "
              f"{rates['import'][-1]:.0f} images/s, "
              f"{result['cpu_s'] / result['added'] * 1000:.2f} ms CPU per image, "
              f"peak memory {result['peak_rss_mb']:.0f} MB", flush=True)
        ref = import_in_child(tmp / f"{label}-ref-{rep}", folder, REFERENCE)
        rates["reference loop"].append(ref["added"] / ref["seconds"])
        print(f"[{label}] reference loop (1 thread: read, SHA-256, decode, 256 px JPEG): "
              f"{rates['reference loop'][-1]:.0f} images/s, "
              f"{ref['cpu_s'] / ref['added'] * 1000:.2f} ms CPU per image", flush=True)
    imp, ref_rate = (statistics.median(v) for v in rates.values())
    print(f"[{label}] median import {imp:.0f} images/s vs reference loop {ref_rate:.0f} "
          f"images/s: ratio {imp / ref_rate:.2f} (goal >= 1.5 on 2 cores); load average "
          + " ".join(f"{v:.1f}" for v in os.getloadavg()), flush=True)


def bench_query(tmp: Path, rows: int) -> None:
    from densestudio.core.store import ImageFilter, Project, bulk_insert_images

    project = Project.create(tmp / "query.dsproj")
    rng = random.Random(0)
    t = time.perf_counter()
    classes = [project.add_class(f"class {i}") for i in range(6)]
    with project.transaction() as s:
        batch = []
        for i in range(rows):
            label = rng.choice(classes).id if rng.random() < 0.7 else None
            batch.append(dict(
                path=f"/line{i % 7}/lot{i // 1000:03d}/part_{i:06d}.png",
                filename=f"part_{i:06d}.png", folder=f"/line{i % 7}/lot{i // 1000:03d}",
                content_hash=f"{i:032x}", byte_size=50_000, width=640, height=480, mode="L",
                label_id=label, label_source="human" if label else None,
                split=rng.choice(("train", "train", "train", "val", "test")) if label else None,
            ))  # fmt: skip
        bulk_insert_images(s, batch)
    print(f"[query] built a {rows}-image project in {time.perf_counter() - t:.1f} s")
    cases = {
        "no filter, by name, last page": (ImageFilter(), "name", rows - 200),
        "one class, by name": (ImageFilter(class_ids=(classes[2].id,)), "name", 0),
        "one class + split, deep page": (
            ImageFilter(class_ids=(classes[2].id,), split="train"), "name", 5000),
        "unlabeled, by date added": (ImageFilter(unlabeled=True), "added", 1000),
        "filename text '12'": (ImageFilter(text="12"), "name", 200),
        "class + text, by class": (
            ImageFilter(class_ids=(classes[1].id, classes[3].id), text="9"), "class", 0),
    }
    worst = 0.0
    for name, (flt, sort, offset) in cases.items():
        times = []
        for _ in range(5):
            t = time.perf_counter()
            rows_out = project.page(flt, sort=sort, offset=offset, limit=200)
            times.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        ids = project.image_ids(flt, sort=sort)
        ids_ms = (time.perf_counter() - t) * 1000
        med = statistics.median(times)
        worst = max(worst, med)
        print(f"[query] {name:<32} page of {len(rows_out)}: median {med:6.1f} ms  "
              f"(all {len(ids)} ids: {ids_ms:6.1f} ms)")
    print(f"[query] worst median page query: {worst:.1f} ms (target < 50 ms)")
    project.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=500)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=1,
                        help="import and reference loop runs per set (alternating)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ds-bench-") as tmp:
        tmp_path = Path(tmp)
        if args.small:
            bench_import(tmp_path, "small 256px", args.small, (256, 256), bases=200,
                         repeats=args.repeats)
        if args.large:
            bench_import(tmp_path, "large 12MP", args.large, (4000, 3000), bases=20,
                         repeats=args.repeats)
        if args.rows:
            bench_query(tmp_path, args.rows)


if __name__ == "__main__":
    main()
