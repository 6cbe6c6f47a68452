"""From-scratch defaults vs the shipped backbone's defaults, side by side (issue 23).

    .venv/bin/python tests/benchmarks/bench_backbone.py [--datasets neu xsdd elpv]
        [--shots 10 25] [--seeds 0 1 2] [--no-full] [--full-seeds 0 1 2] [--workdir DIR]
        [--limit N]   (smoke: at most N images per class are imported)

For each data set (read from ../shared/datasets, imported once into a project in the work
folder) and each few-label setting k: k training images per class and ceil(k/2) validation
images per class are drawn with the seed, every other image is the test set. Both arms
train what the Train button would: ``recommend(...)`` without pretrained weights
("scratch") and with DenseStudio's shipped backbone ("backbone"). Then the full sets with
the default 70/15/15 split, as in bench_defaults. Printed per run: balanced accuracy,
wall time (train + evaluate), images/s, load average; at the end mean and spread over the
seeds per (data set, k, arm), and for ELPV the share of p1.00 cells called functional,
for X-SDD the macro-F1. Also printed: the CPU model and whether bf16 autocast is used.
Run it on a quiet machine (nothing else running). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select

from densestudio.core import runs
from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.models import Image as ImageRow
from densestudio.core.profile import data_profile
from densestudio.core.splits import set_split
from densestudio.core.store import Project
from densestudio.ml import backbone
from densestudio.ml.eval_report import report
from densestudio.ml.recommend import recommend
from densestudio.ml.runtime import cpu_bf16_fast, cpu_model
from densestudio.ml.train import fit

SHARED = ROOT.parent / "shared" / "datasets"
REAL = {
    "neu": SHARED / "neu-surface-defects",
    "xsdd": SHARED / "xsdd-steel-strip",
    "elpv": SHARED / "elpv-solar-cells",
}
ARMS = ("scratch", "backbone")


def _linked_subset(src: Path, dst: Path, limit: int | None) -> Path:
    """The data set as symlinks (at most ``limit`` per class): never a copy."""
    if limit is None:
        return src
    for class_dir in sorted(p for p in src.iterdir() if p.is_dir()):
        out = dst / class_dir.name
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(p for p in class_dir.iterdir() if p.is_file())[:limit]:
            link = out / f.name
            if not link.exists():
                link.symlink_to(f)
    return dst


def open_project(path: Path, folder: Path) -> Project:
    if path.exists():
        return Project.open(path)  # the decoded cache of earlier runs is reused
    path.parent.mkdir(parents=True, exist_ok=True)
    project = Project.create(path)
    run_import(project, [folder], ImportOptions(labels_from_subfolders=True))
    return project


def few_label_split(project: Project, k: int, seed: int) -> None:
    """k train + ceil(k/2) validation images per class (seeded), the rest test."""
    rng = np.random.default_rng(seed)
    n_val = max(1, math.ceil(k / 2))
    with project.transaction() as s:
        rows = s.execute(select(ImageRow.id, ImageRow.label_id)
                         .where(ImageRow.label_id.is_not(None))).all()  # fmt: skip
        by_class: dict[int, list[int]] = {}
        for image_id, label in rows:
            by_class.setdefault(label, []).append(image_id)
        train, val, test = [], [], []
        for ids in by_class.values():
            ids = sorted(ids)
            order = rng.permutation(len(ids))
            picked = [ids[i] for i in order]
            train += picked[:k]
            val += picked[k : k + n_val]
            test += picked[k + n_val :]
        set_split(s, train, "train")
        set_split(s, val, "val")
        set_split(s, test, "test")


def train_arm(project: Project, arm: str, seed: int, budget_s: float | None = None,
              overrides: dict[str, object] | None = None) -> dict[str, object]:  # fmt: skip
    profile = data_profile(project)
    rec = recommend(profile, "cpu", weights_available=False,
                    backbone_available=arm == "backbone")  # fmt: skip
    cfg = rec.config.with_(seed=seed, device="cpu")
    if overrides and arm == "backbone":
        cfg = cfg.with_(**overrides)
    if budget_s is not None:  # smoke runs only: the defaults' own budget is what is measured
        cfg = cfg.with_(time_budget_s=budget_s, epochs=min(cfg.epochs, 3)).unfreeze_within_epochs()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    run_id = fit(project, cfg)
    wall = time.perf_counter() - t0
    info = runs.get_run(project, run_id)
    rep = report(project, run_id, "test")
    row: dict[str, object] = {
        "arm": arm, "seed": seed, "bal_acc": rep.balanced_accuracy, "macro_f1": rep.macro_f1,
        "wall_s": wall, "ips": info.metrics.get("train_images_per_s") or 0.0, "load": load,
        "input": "x".join(map(str, cfg.canvas)), "budget": cfg.time_budget_s,
        "start": info.extra.get("starting_point"), "n_test": info.metrics.get("n_test"),
    }  # fmt: skip
    names = list(rep.class_names)
    if "p1.00_defective" in names and "p0.00_functional" in names:
        d, g = names.index("p1.00_defective"), names.index("p0.00_functional")
        row["p1_called_functional"] = rep.confusion[d][g] / max(1, sum(rep.confusion[d]))
    return row


def show(tag: str, row: dict[str, object]) -> None:
    extra = (f"  p1.00 called functional {float(row['p1_called_functional']) * 100:.1f} %"
             if "p1_called_functional" in row else "")  # fmt: skip
    print(f"{tag:<18} {row['arm']:<8} seed {row['seed']}  balanced "
          f"{float(row['bal_acc']) * 100:6.2f} %  macro-F1 {float(row['macro_f1']):.3f}"
          f"{extra}  wall {float(row['wall_s']):5.0f} s  {float(row['ips']):4.0f} img/s  "
          f"input {row['input']}  start {row['start']}  load {float(row['load']):.2f}",
          flush=True)  # fmt: skip


def summary(results: dict[tuple[str, str], list[dict[str, object]]]) -> None:
    print("\nsummary (mean ± spread (stdev) over seeds; wall mean / max):")
    for (tag, arm), rows in results.items():
        accs = [float(r["bal_acc"]) * 100 for r in rows]
        walls = [float(r["wall_s"]) for r in rows]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        extra = ""
        if all("p1_called_functional" in r for r in rows):
            extra = (f"  p1.00 called functional "
                     f"{statistics.mean(float(r['p1_called_functional']) for r in rows) * 100:.1f}"
                     " %")  # fmt: skip
        f1 = statistics.mean(float(r["macro_f1"]) for r in rows)
        print(f"{tag:<18} {arm:<8} balanced {statistics.mean(accs):6.2f} ± {sd:4.2f} %  "
              f"macro-F1 {f1:.3f}{extra}  wall {statistics.mean(walls):5.0f} / "
              f"{max(walls):5.0f} s  ({len(rows)} seeds)")  # fmt: skip


def _value(text: str) -> object:
    try:
        return json.loads(text)  # numbers, true/false, null
    except ValueError:
        return text  # a word: strategy=full


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["neu", "xsdd", "elpv"], choices=[*REAL])
    ap.add_argument("--shots", type=int, nargs="+", default=[10, 25])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--full-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-full", action="store_true", help="skip the full sets")
    ap.add_argument("--limit", type=int, help="smoke: at most N images per class")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override a TrainConfig field of the backbone arm, e.g. img_size=128")
    ap.add_argument("--budget-s", type=float, help="smoke: a time budget instead of the defaults'")
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench-out" / "backbone")
    args = ap.parse_args()
    overrides = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    problem = backbone.check()
    print(f"CPU {cpu_model()} ({os.cpu_count()} cores), bf16 autocast "
          f"{'used' if cpu_bf16_fast() else 'not used'}, load average "
          f"{os.getloadavg()[0]:.2f}; backbone "
          f"{'OK' if problem is None else problem}: {backbone.info().get('steps')} steps, "
          f"held-out accuracy {backbone.info().get('heldout_acc')}", flush=True)  # fmt: skip
    if problem is not None:
        return 1
    results: dict[tuple[str, str], list[dict[str, object]]] = {}
    for name in args.datasets:
        src = REAL[name]
        if not src.is_dir():
            print(f"{name}: not found at {src}; skipped")
            continue
        folder = _linked_subset(src, args.workdir / "data" / name, args.limit)
        few = open_project(args.workdir / "projects" / f"{name}_few.dsproj", folder)
        for k in args.shots:
            for seed in args.seeds:
                few_label_split(few, k, seed)
                for arm in args.arms:
                    row = train_arm(few, arm, seed, args.budget_s, overrides)
                    results.setdefault((f"{name} {k}/class", arm), []).append(row)
                    show(f"{name} {k}/class", row)
        few.close()
        if args.no_full:
            continue
        full = open_project(args.workdir / "projects" / f"{name}_full.dsproj", folder)
        for seed in args.full_seeds:
            for arm in args.arms:
                row = train_arm(full, arm, seed, args.budget_s, overrides)
                results.setdefault((f"{name} full", arm), []).append(row)
                show(f"{name} full", row)
        full.close()
    summary(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
