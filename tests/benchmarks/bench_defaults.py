"""The defaults on real and awkward data: what a user gets by pressing Train.

    .venv/bin/python tests/benchmarks/bench_defaults.py [--datasets elpv xsdd neu ...]
        [--seeds 0 1 2] [--recipe defaults|legacy] [--set key=value ...] [--workdir DIR]

For each data set: import it into a fresh project (labels from sub-folders), split it
70/15/15 (stratified, the app's default), take ``recommend(data_profile(project))`` - the
settings the Train tab fills in - and train them on the CPU, then print test accuracy,
balanced accuracy, macro-F1, the worst class's recall and the run's wall time (and for
ELPV the share of p1.00 defective cells called functional). NEU runs once per seed.
For a data set with a good class (ELPV: p0.00_functional; wide16: clean; NEU and X-SDD have
none) it also prints the OK/NG operating point the run picked on validation and, on the
test split at that point, defects passed as good, good parts rejected and UNSURE, each with
its exact 95 % interval. First and last: CPU model, bf16 or not, the load average.

Data sets (real ones read from ../shared/datasets, synthetic ones generated into the
work folder, never into the repository):
- ``neu``: NEU surface defects, 6 x 300 gray 200 x 200.
- ``xsdd``: X-SDD steel strip, 7 imbalanced RGB classes, 128 x 128.
- ``elpv``: ELPV solar cells, 4 defect-probability levels, mostly good, 300 x 300.
- ``neu_strips``: each NEU image at one end of an 800 x 200 strip (4:1); the rest of the
  strip is a defect-free blurred copy of the same surface, so the defect sits in a corner.
- ``neu_mixed``: NEU crops with random aspect ratios from 0.4:1 to 3:1.
- ``wide16``: generated 2048 x 128 strips (16:1) of noisy texture: clean, with a 2 px
  scratch across the short side, or with a 6 px spot (3 x 120 images): thin defects in
  very wide images.

``--recipe legacy`` trains the defaults of version 0.1 instead (every image squashed to a
128 px square, no imbalance handling, best checkpoint by validation loss, fixed epochs),
so before and after are measured side by side. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageFilter

from densestudio.core import runs
from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.profile import data_profile
from densestudio.core.stats import clopper_pearson
from densestudio.core.store import Project
from densestudio.ml import operating_point as op
from densestudio.ml.config import TrainConfig
from densestudio.ml.eval_report import report
from densestudio.ml.events import EpochsPlanned, RunStarted
from densestudio.ml.recommend import recommend
from densestudio.ml.train import fit

SHARED = ROOT.parent / "shared" / "datasets"
REAL = {
    "neu": SHARED / "neu-surface-defects",
    "xsdd": SHARED / "xsdd-steel-strip",
    "elpv": SHARED / "elpv-solar-cells",
}
GOOD = {"elpv": "p0.00_functional", "wide16": "clean"}


# ------------------------------------------------------------------ synthetic sets
def _neu_files() -> list[tuple[str, Path]]:
    return [(p.parent.name, p) for p in sorted(REAL["neu"].glob("*/*")) if p.is_file()]


def make_neu_strips(out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for cls, path in _neu_files():
        img = Image.open(path).convert("L")
        w, h = img.size
        background = img.filter(ImageFilter.GaussianBlur(6))
        strip = Image.new("L", (4 * w, h))
        for i in range(4):
            strip.paste(background.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2
                        else background, (i * w, 0))  # fmt: skip
        strip.paste(img, (0 if rng.random() < 0.5 else 3 * w, 0))
        dest = out / cls / f"{path.stem}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        strip.save(dest)


def make_neu_mixed(out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for cls, path in _neu_files():
        img = Image.open(path).convert("L")
        w, h = img.size
        aspect = math.exp(rng.uniform(math.log(0.4), math.log(3.0)))
        cw, ch = (w, round(w / aspect)) if aspect >= 1 else (round(h * aspect), h)
        x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        dest = out / cls / f"{path.stem}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        img.crop((int(x0), int(y0), int(x0) + cw, int(y0) + ch)).save(dest)


def make_wide16(out: Path, seed: int = 0, n: int = 120) -> None:
    rng = np.random.default_rng(seed)
    w, h = 2048, 128
    for cls in ("clean", "scratch", "spot"):
        for i in range(n):
            base = rng.normal(120, 14, (h, w)).astype(np.float32)
            base += 20 * np.sin(np.arange(w) / rng.uniform(20, 60))[None, :]
            if cls == "scratch":
                x = int(rng.integers(40, w - 40))
                base[:, x : x + 2] -= 45  # a 2 px dark line across the strip
            elif cls == "spot":
                cx, cy = int(rng.integers(20, w - 20)), int(rng.integers(20, h - 20))
                yy, xx = np.ogrid[:h, :w]
                base[(xx - cx) ** 2 + (yy - cy) ** 2 <= 9] += 50  # 6 px bright spot
            dest = out / cls / f"{cls}_{i:03d}.png"
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(dest)


SYNTHETIC = {"neu_strips": make_neu_strips, "neu_mixed": make_neu_mixed, "wide16": make_wide16}


def dataset_folder(name: str, workdir: Path) -> Path:
    if name in REAL:
        return REAL[name]
    folder = workdir / "data" / name
    if not (folder / ".done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        SYNTHETIC[name](folder)
        (folder / ".done").touch()
    return folder


# ------------------------------------------------------------------ recipes
def legacy_config(n_labeled: int) -> TrainConfig:
    """Version 0.1's defaults (its default_config for a CPU without pretrained weights)."""
    n_train = max(1, int(n_labeled * 0.7))
    epochs = int(min(60, max(12, round(1200 / max(1, -(-n_train // 32))))))
    return TrainConfig(
        arch="densenet_bc_1m", img_size=128, fit="stretch", epochs=epochs, batch_size=32,
        lr=2e-3, schedule="onecycle", augment="inspection", balance="none",
        monitor="val_loss", tta=False, device="cpu",
    )  # fmt: skip


def _parse_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run_one(name: str, folder: Path, workdir: Path, seed: int, recipe: str,
            overrides: dict[str, object]) -> dict[str, object]:
    project_path = workdir / "projects" / f"{name}.dsproj"
    project_path.parent.mkdir(parents=True, exist_ok=True)
    if not project_path.exists():
        project = Project.create(project_path)
        run_import(project, [folder], ImportOptions(labels_from_subfolders=True))
    else:
        project = Project.open(project_path)  # the decoded cache of earlier runs is reused
    if name in GOOD:  # the good class is project data: every Train ends with OK/NG
        op.set_project_good_class(project, GOOD[name])
    profile = data_profile(project)
    rec = recommend(profile, "cpu", weights_available=False)
    cfg = rec.config if recipe == "defaults" else legacy_config(profile.n_labeled)
    cfg = cfg.with_(seed=seed, device="cpu", **overrides)
    planned: list[int] = []

    def on_event(e: object) -> None:
        if isinstance(e, RunStarted):
            planned.append(e.total_epochs)
        elif isinstance(e, EpochsPlanned):
            planned.append(e.epochs)

    load_before = _load()
    t0 = time.perf_counter()
    run_id = fit(project, cfg, on_event=on_event)
    wall = time.perf_counter() - t0
    info = runs.get_run(project, run_id)
    rep = report(project, run_id, "test")
    worst = rep.worst_class
    row: dict[str, object] = {
        "dataset": name, "seed": seed, "recipe": recipe, "acc": rep.accuracy,
        "bal_acc": rep.balanced_accuracy, "macro_f1": rep.macro_f1,
        "worst": f"{worst.name} {worst.recall:.3f}" if worst else "-",
        "worst_recall": worst.recall if worst else 0.0, "wall_s": wall,
        "epochs": info.metrics.get("epochs_trained"), "best_epoch": info.best_epoch,
        "ips": info.metrics.get("train_images_per_s"),
        "input": "x".join(map(str, cfg.canvas)), "fit": cfg.fit, "balance": cfg.balance,
        "plan": planned, "load_before": load_before, "load_after": _load(),
    }  # fmt: skip
    if name == "elpv":
        names = list(rep.class_names)
        d, g = names.index("p1.00_defective"), names.index("p0.00_functional")
        row["p1_called_functional"] = rep.confusion[d][g] / max(1, sum(rep.confusion[d]))
    good = GOOD.get(name)
    if good:
        missed, defects = rep.called_good(good)
        row["defects_called_good"] = missed / max(1, defects)  # argmax
        row.update(ok_ng(project, run_id))
    project.close()
    return row


def _load() -> float:
    import os

    return os.getloadavg()[0]


def ok_ng(project: Project, run_id: int) -> dict[str, object]:
    """The run's OK/NG point and what it decides on the test split, with intervals."""
    point = op.load_operating_point(project, run_id)
    record = op.picked_record(project, run_id) or {}
    out: dict[str, object] = {"point": None, "point_note": record.get("message")}
    counts = op.run_decision(project, run_id, "test")
    if point is None or counts is None:
        return out
    out["point"] = {"threshold": point.threshold, "unsure": [point.unsure_low,
                    point.unsure_high], "target": record.get("target"),
                    "shown_on_val": record.get("shown")}
    passed = clopper_pearson(counts.passed, counts.defects)
    rejected = clopper_pearson(counts.rejected, counts.good)
    unsure = clopper_pearson(counts.unsure, counts.n)
    out["test_ok_ng"] = {
        "defects_passed": [counts.passed, counts.defects, passed.low, passed.high,
                           counts.passed_upper],
        "good_rejected": [counts.rejected, counts.good, rejected.low, rejected.high],
        "unsure": [counts.unsure, counts.n, unsure.low, unsure.high],
    }
    return out


def _ok_ng_text(row: dict[str, object]) -> str:
    point = row.get("point")
    if not isinstance(point, dict):
        return f"    OK/NG: no operating point ({row.get('point_note')})"
    t = row["test_ok_ng"]
    assert isinstance(t, dict)

    def frac(v: list[float]) -> str:
        return (f"{v[0]} of {v[1]} ({v[0] / max(v[1], 1) * 100:.1f} %, 95 % CI "
                f"{v[2] * 100:.1f}-{v[3] * 100:.1f} %)")

    low, high = point["unsure"]
    shown = "shown on validation" if point["shown_on_val"] else "NOT shown on validation"
    text = (f"    OK/NG point: OK when P(good) >= {point['threshold']:.4f}, UNSURE in "
            f"[{low}, {high}), target <= {float(point['target'] or 0) * 100:g} % passed "
            f"({shown})\n"
            f"    test: defects passed as good {frac(t['defects_passed'])}, at most "
            f"{t['defects_passed'][4] * 100:.1f} % one-sided; good parts rejected "
            f"{frac(t['good_rejected'])}; UNSURE {frac(t['unsure'])}")
    if not point["shown_on_val"]:
        text += f"\n    note: {row.get('point_note')}"
    return text


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["elpv", "xsdd", "neu"],
                    choices=[*REAL, *SYNTHETIC])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--neu-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipe", choices=("defaults", "legacy"), default="defaults")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override a TrainConfig field, e.g. balance=sampler img_size=160")
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench-out" / "defaults")
    ap.add_argument("--json", type=Path, help="append result rows to this JSON-lines file")
    args = ap.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    overrides = {k: _parse_value(v) for k, v in overrides.items()}
    from densestudio.ml.runtime import cpu_bf16_fast
    from tests.benchmarks.bench_load import cpu_model

    print(f"CPU: {cpu_model()}; bf16 {'yes' if cpu_bf16_fast() else 'no'}; load average "
          f"{_load():.2f}", flush=True)
    rows = []
    for name in args.datasets:
        folder = dataset_folder(name, args.workdir)
        if not folder.is_dir():
            print(f"{name}: data set not found at {folder}; skipped")
            continue
        seeds = args.neu_seeds if name == "neu" else args.seeds
        for seed in seeds:
            row = run_one(name, folder, args.workdir, seed, args.recipe, overrides)
            rows.append(row)
            extra = "".join(f"  {k} {row[k] * 100:.1f} %" for k in
                            ("p1_called_functional", "defects_called_good") if k in row)
            print(f"{name:<11} seed {seed} [{args.recipe} {row['input']} {row['fit']} "
                  f"{row['balance']}]  acc {row['acc'] * 100:.2f} %  balanced "
                  f"{row['bal_acc'] * 100:.2f} %  macro-F1 {row['macro_f1']:.3f}  worst "
                  f"{row['worst']}{extra}  wall {row['wall_s']:.0f} s  epochs "
                  f"{row['epochs']} (plan {row['plan']}, best {row['best_epoch']})  "
                  f"{row['ips']:.0f} img/s  load {row['load_before']:.2f} -> "
                  f"{row['load_after']:.2f}", flush=True)  # fmt: skip
            if "point" in row:
                print(_ok_ng_text(row), flush=True)
            if args.json:
                with args.json.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    for name in args.datasets:
        mine = [r for r in rows if r["dataset"] == name]
        if len(mine) > 1:
            accs = [float(r["acc"]) for r in mine]
            f1s = [float(r["macro_f1"]) for r in mine]
            print(f"{name:<11} mean over {len(mine)} seeds: acc {statistics.mean(accs) * 100:.2f}"
                  f" %  macro-F1 {statistics.mean(f1s):.3f}  max wall "
                  f"{max(float(r['wall_s']) for r in mine):.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
