"""Label-error benchmark on NEU surface defects (6 classes x 300 grayscale 200x200 JPEGs).

    .venv/bin/python tests/benchmarks/bench_label_errors.py [--flip 0.05] [--folds 5]
        [--epochs N] [--img-size PX] [--arch densenet_bc_tiny] [--threads N] [--seed 0]

Imports the folder into a temporary project (labels from sub-folders), flips ``--flip`` of the
labels to another class at random (seeded), runs the label audit (``ml.crossval``: k-fold
cross-training of the compact model, default settings from ``audit_config``) and prints the
precision at the number flipped (of the N most suspicious images, how many were flipped), the
recall among the images shown as suspects, the out-of-sample accuracy and the wall time.
Not collected by pytest (file name does not start with test_).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np

from densestudio.core.store import Project
from densestudio.ml import crossval
from densestudio.ml.label_errors import precision_at
from densestudio.ml.threads import limited_threads

if TYPE_CHECKING:
    from densestudio.core.store import ImageFilter

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "neu-surface-defects"


def flip_labels(project: Project, fraction: float, seed: int) -> set[int]:
    """Relabel ``fraction`` of the labeled images with another class; returns their ids."""
    rng = np.random.default_rng(seed)
    classes = project.classes()
    ids, labels = [], []
    for c in classes:
        for image_id in project.image_ids(_filter(c.id)):
            ids.append(image_id)
            labels.append(c.id)
    n_flip = round(fraction * len(ids))
    chosen = rng.choice(len(ids), n_flip, replace=False)
    assignments = []
    for row in chosen:
        others = [c.id for c in classes if c.id != labels[row]]
        assignments.append((ids[row], others[int(rng.integers(len(others)))]))
    project.set_labels_many(assignments)
    return {i for i, _ in assignments}


def _filter(class_id: int) -> ImageFilter:
    from densestudio.core.store import ImageFilter

    return ImageFilter(class_ids=(class_id,))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--img-size", type=int)
    parser.add_argument("--arch")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores but one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"dataset not found: {args.data}", file=sys.stderr)
        return 2

    from densestudio.core.importer import ImportOptions, run_import

    with tempfile.TemporaryDirectory(prefix="ds-bench-audit-") as tmp:
        project = Project.create(Path(tmp) / "neu.dsproj")
        t = time.perf_counter()
        run_import(project, [args.data], ImportOptions(labels_from_subfolders=True))
        print(f"imported {project.count_images()} images in {time.perf_counter() - t:.1f} s")
        wrong = flip_labels(project, args.flip, args.seed)
        counts = project.counts()
        n = counts.total - counts.count(None)
        cfg = crossval.audit_config(n, "cpu")
        changes = {"device": "cpu"}
        for name in ("epochs", "img_size", "arch"):
            if getattr(args, name) is not None:
                changes[name] = getattr(args, name)
        cfg = cfg.with_(**changes)
        print(f"flipped {len(wrong)} of {n} labels ({args.flip:.0%}, seed {args.seed}); "
              f"audit: {args.folds} folds, {cfg.arch} {cfg.img_size} px, {cfg.epochs} epochs, "
              f"batch {cfg.batch_size}, augment {cfg.augment}, EMA {cfg.ema}, TTA {cfg.tta}")

        last = [0.0]

        def on_event(e: object) -> None:
            if isinstance(e, crossval.FoldEnded):
                print(f"  fold {e.fold}/{e.folds}: {e.held_out} held out, accuracy vs given "
                      f"labels {e.accuracy:.2%}, {e.seconds:.0f} s", flush=True)
            elif isinstance(e, crossval.AuditProgress) and time.perf_counter() - last[0] > 30:
                last[0] = time.perf_counter()
                eta = f"{e.eta_s:.0f} s" if e.eta_s is not None else "?"
                print(f"  fold {e.fold}/{e.folds} epoch {e.epoch}/{e.epochs}  ETA {eta}",
                      flush=True)

        t = time.perf_counter()
        with limited_threads(args.threads) as threads:
            audit = crossval.cross_validate(project, args.folds, cfg, on_event)
        wall = time.perf_counter() - t
        rows = {audit.image_ids.index(i) for i in wrong}
        p_at = precision_at(list(audit.issues), rows)
        suspects = audit.suspects()
        found = sum(1 for i in suspects if i.index in rows)
        correct_suggestion = 0
        for issue in audit.issues[: len(rows)]:
            if issue.index in rows:
                folder = Path(project.image(audit.image_id(issue)).path).parent.name
                correct_suggestion += audit.class_names[issue.suggested] == folder
        print()
        print(f"precision at {len(rows)} (number flipped): {p_at:.3f}")
        print(f"suspects shown: {len(suspects)}; they contain {found}/{len(rows)} flipped "
              f"(recall {found / max(1, len(rows)):.2f}, precision "
              f"{found / max(1, len(suspects)):.2f})")
        print(f"suggested class = true class for {correct_suggestion} of the flipped in the top "
              f"{len(rows)}")
        print(f"out-of-sample accuracy vs given labels: {audit.oos_accuracy:.2%}")
        print(f"wall time: {wall:.0f} s ({threads} torch thread(s))")
        project.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
