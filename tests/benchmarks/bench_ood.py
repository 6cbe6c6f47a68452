"""Unknown inputs and bad frames, as the exported file decides them (issue 25).

For each data set (NEU, X-SDD, ELPV from ../shared): import it (labels from sub-folders,
the app's 70/15/15 split), train what the Train button trains (``recommend`` on this
machine's device, no pretrained weights), export to ONNX and run the file in ONNX Runtime
as the line does - or take model files you already have (``--model neu=FILE``; the
project that made it must be in the work folder, for its test split). Then, per model:

- known: the model's test images; the share flagged (UNSURE by a frame check or by the
  feature score) - target <= 2 %;
- bad frames made from those test images: black, white, flat grey, heavily blurred, 2x
  over- and under-exposed, rotated by 90 degrees (meaningless where training rotates);
- far: the other data sets' images;
- near (``--near``): each class held out of training in turn (a model trained without it),
  its images against the known test images.

For each kind: AUROC of the feature score alone (``ood_score``), AUROC of the file's
combined decision (a frame that fails a frame check ranks above every feature score), and
the share the file flags. Targets: every bad-frame kind >= 99 % flagged, far AUROC >= 0.95,
near mean AUROC >= 0.80. Not collected by pytest; the full run trains 3 + 17 (near) models.

    .venv/bin/python tests/benchmarks/bench_ood.py [--datasets neu xsdd elpv] [--near]
        [--model neu=bench-out/ood/models/neu.onnx] [--set epochs=2 ...] [--far-n 200]
        [--per-class N] [--device auto] [--workdir bench-out/ood]

Smoke (a few minutes): --datasets neu --per-class 12 --set epochs=1 --far-n 8 --near-classes 1
Frame checks alone, no model (a minute): --frames-only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from densestudio.core import runs
from densestudio.core.imaging import is_image_path
from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.profile import data_profile
from densestudio.core.store import Project
from densestudio.ml import export
from densestudio.ml.recommend import recommend
from densestudio.ml.snapshot import load_snapshot
from densestudio.ml.train import fit
from densestudio.runtime.model_file import ModelFile, PredictionResult
from densestudio.runtime.onnx_model import load_onnx

SHARED = ROOT.parent / "shared" / "datasets"
DATASETS = {"neu": SHARED / "neu-surface-defects", "xsdd": SHARED / "xsdd-steel-strip",
            "elpv": SHARED / "elpv-solar-cells"}
FRAME_KINDS = ("black", "white", "flat grey", "heavily blurred", "2x overexposed",
               "2x underexposed", "rotated 90")


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """P(score of an unknown image > score of a known one), ties counted half."""
    if not len(known) or not len(unknown):
        return float("nan")
    scores = np.concatenate([known, unknown])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tie = scores == value
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    n1, n0 = len(unknown), len(known)
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# ------------------------------------------------------------------ data and models
def class_files(folder: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(p for p in d.rglob("*") if p.is_file() and is_image_path(p))
            for d in sorted(folder.iterdir()) if d.is_dir()}


def subset_folder(name: str, workdir: Path, per_class: int | None,
                  without: str | None = None) -> Path:
    """The data set's folder, or a folder of links to part of it (the first ``per_class``
    images of each class, ``without`` one class)."""
    if per_class is None and without is None:
        return DATASETS[name]
    tag = f"{name}-{per_class or 'all'}" + (f"-without-{without}" if without else "")
    out = workdir / "data" / tag
    if not (out / ".done").exists():
        shutil.rmtree(out, ignore_errors=True)
        for cls, files in class_files(DATASETS[name]).items():
            if cls == without:
                continue
            (out / cls).mkdir(parents=True)
            for p in files[:per_class]:
                (out / cls / p.name).symlink_to(p)
        (out / ".done").touch()
    return out


def train_and_export(tag: str, folder: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """(project, model file) trained with the Train button's settings (plus ``--set``)."""
    project_path = args.workdir / "projects" / f"{tag}.dsproj"
    model_path = args.workdir / "models" / f"{tag}.onnx"
    if model_path.is_file() and project_path.is_file() and not args.retrain:
        return project_path, model_path
    for old in project_path.parent.glob(project_path.name + "*"):
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    project_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    with Project.create(project_path) as project:
        run_import(project, [folder], ImportOptions(labels_from_subfolders=True))
        rec = recommend(data_profile(project), device_kind(args.device),
                        weights_available=False)
        cfg = rec.config.with_(device=args.device, seed=0, **args.overrides)
        t = time.perf_counter()
        run_id = fit(project, cfg)
        m = runs.get_run(project, run_id).metrics
        print(f"  {tag}: trained {cfg.arch} {'x'.join(map(str, cfg.canvas))}, "
              f"{m.get('epochs_trained')} epochs in {time.perf_counter() - t:.0f} s; test "
              f"accuracy {float(m.get('test_acc') or 0) * 100:.1f} %", flush=True)
        export.export_model(project, run_id, model_path)
    return project_path, model_path


def device_kind(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def test_paths(project_path: Path, model: ModelFile) -> list[Path]:
    run_id = int(model.metadata["run"]["id"])
    with Project.open(project_path) as project:
        snap = load_snapshot(project, run_id)
        return [Path(snap.items[i].path) for i in snap.indices("test")]


# ------------------------------------------------------------------ the kinds
def bad_frames(known: list[Path], n: int, out: Path, rng: np.random.Generator
               ) -> dict[str, list[Path]]:
    """Bad frames of each kind, written as PNG (the file reads files), from up to ``n``
    known test images (their size, so the frame checks see no aspect change)."""
    out.mkdir(parents=True, exist_ok=True)
    chosen = [known[i] for i in rng.choice(len(known), min(n, len(known)), replace=False)]
    kinds: dict[str, list[Path]] = {k: [] for k in FRAME_KINDS}
    for i, src in enumerate(chosen):
        img = Image.open(src).convert("RGB" if Image.open(src).mode == "RGB" else "L")
        arr = np.asarray(img, np.float32)
        w, h = img.size
        noise = rng.normal(0, 1.5, arr.shape)
        made = {
            "black": np.clip(rng.uniform(0, 12) + noise, 0, 255),
            "white": np.clip(rng.uniform(243, 255) + noise, 0, 255),
            "flat grey": np.clip(rng.uniform(40, 215) + noise, 0, 255),
            "heavily blurred": np.asarray(
                img.filter(ImageFilter.GaussianBlur(max(3.0, 0.03 * max(w, h)))), np.float32),
            "2x overexposed": np.clip(arr * 2.0, 0, 255),
            "2x underexposed": arr * 0.5,
            "rotated 90": np.asarray(img.transpose(Image.Transpose.ROTATE_90), np.float32),
        }
        for kind, pixels in made.items():
            path = out / f"{kind.replace(' ', '_')}_{i}.png"
            Image.fromarray(pixels.astype(np.uint8), img.mode).save(path)
            kinds[kind].append(path)
    return kinds


def far_sets(name: str, n: int, rng: np.random.Generator) -> dict[str, list[Path]]:
    out = {}
    for other, folder in DATASETS.items():
        if other == name or not folder.is_dir():
            continue
        files = [p for fs in class_files(folder).values() for p in fs]
        out[f"far: {other}"] = [files[i] for i in rng.choice(len(files), min(n, len(files)),
                                                             replace=False)]
    return out


def scores(results: list[PredictionResult], threshold: float | None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(feature score, combined score, flagged by the file, flagged by a frame check)."""
    ok = [r for r in results if r.error is None]
    feat = np.array([r.ood_score if r.ood_score is not None else 0.0 for r in ok])
    frame = np.array([r.reason is not None and r.reason != "unlike the training images"
                      for r in ok])
    scale = threshold if threshold else 1.0
    combined = np.where(frame, 1e6 + feat, feat / scale)
    return feat, combined, np.array([r.unfamiliar for r in ok]), frame


def row(kind: str, known: tuple, other: list[PredictionResult], threshold: float | None
        ) -> dict[str, object]:
    f, c, flagged, frame = scores(other, threshold)
    reasons: dict[str, int] = {}
    for r in other:
        if r.reason:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
    top = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:2])
    return {"kind": kind, "n": len(f), "auroc_feature": auroc(known[0], f),
            "auroc_file": auroc(known[1], c), "flagged": float(flagged.mean()) if len(f) else
            float("nan"), "by_frame_checks": float(frame.mean()) if len(f) else float("nan"),
            "reasons": top}


def print_rows(rows: list[dict[str, object]]) -> None:
    print(f"    {'kind':<26} {'n':>5} {'AUROC score':>11} {'AUROC file':>10} {'flagged':>8} "
          f"{'by frame':>9}  reasons")
    for r in rows:
        print(f"    {r['kind']:<26} {r['n']:>5} {r['auroc_feature']:>11.4f} "
              f"{r['auroc_file']:>10.4f} {r['flagged'] * 100:>7.1f}% "
              f"{r['by_frame_checks'] * 100:>8.1f}%  {r['reasons']}", flush=True)


def evaluate_model(name: str, project_path: Path, model_path: Path, args: argparse.Namespace,
                   rng: np.random.Generator) -> dict[str, object]:
    model = load_onnx(model_path)
    threshold = model.spec.ood_threshold
    known_paths = test_paths(project_path, model)
    known_res = model.predict(known_paths)
    kf, kc, kflag, kframe = scores(known_res, threshold)
    known = (kf, kc)
    aug = model.metadata.get("run", {}).get("config", {}).get("augment")
    print(f"\n{name}: {model_path.name}, feature threshold {threshold}, augment {aug!r}; "
          f"known test images flagged {kflag.mean() * 100:.1f} % of {len(kf)} (by frame "
          f"checks {kframe.mean() * 100:.1f} %; target <= 2 %)", flush=True)
    rows = []
    for kind, files in bad_frames(known_paths, args.far_n, args.workdir / "frames" / name,
                                  rng).items():
        rows.append(row(kind, known, model.predict(files), threshold))
    for kind, files in far_sets(name, args.far_n, rng).items():
        rows.append(row(kind, known, model.predict(files), threshold))
    print_rows(rows)
    return {"dataset": name, "model": str(model_path), "known_n": len(kf),
            "known_flagged": float(kflag.mean()), "known_by_frame_checks": float(kframe.mean()),
            "threshold": threshold, "rows": rows}


def near(name: str, args: argparse.Namespace) -> dict[str, object]:
    classes = list(class_files(DATASETS[name]))[: args.near_classes]
    rows, flagged = [], []
    print(f"\n{name} near: each class held out of training in turn", flush=True)
    for held in classes:
        folder = subset_folder(name, args.workdir, args.per_class, without=held)
        project_path, model_path = train_and_export(f"{name}-without-{held}", folder, args)
        model = load_onnx(model_path)
        known_res = model.predict(test_paths(project_path, model))
        kf, kc, kflag, _ = scores(known_res, model.spec.ood_threshold)
        held_files = class_files(DATASETS[name])[held][: args.per_class]
        rows.append(row(f"held out: {held}", (kf, kc), model.predict(held_files),
                        model.spec.ood_threshold))
        flagged.append(float(kflag.mean()))
    print_rows(rows)
    mean_file = float(np.mean([r["auroc_file"] for r in rows]))
    mean_feat = float(np.mean([r["auroc_feature"] for r in rows]))
    print(f"    mean AUROC: score {mean_feat:.4f}, file {mean_file:.4f} (target >= 0.80); "
          f"known test images flagged {np.mean(flagged) * 100:.1f} % on average")
    return {"dataset": name, "near": rows, "mean_auroc_feature": mean_feat,
            "mean_auroc_file": mean_file, "known_flagged": float(np.mean(flagged))}


def frames_only(name: str, args: argparse.Namespace, rng: np.random.Generator) -> None:
    """The frame checks alone, no model: ranges from 70 % of each class (decoded at a
    192 px canvas's draft size), the rest as known images; share flagged per kind."""
    from densestudio.core.imaging import load_image
    from densestudio.runtime.frame_checks import FrameChecks, frame_stats, ranges_from

    train: list[tuple[Path, str]] = []
    known: list[Path] = []
    for cls, files in class_files(DATASETS[name]).items():
        order = rng.permutation(len(files))
        cut = int(0.7 * len(files))
        train += [(files[i], cls) for i in order[:cut]]
        known += [files[i] for i in order[cut:]]
    checks = FrameChecks.from_meta(ranges_from(
        [frame_stats(load_image(p, max_side=192)) for p, _ in train], [c for _, c in train]))
    assert checks is not None

    def flagged(files: list[Path]) -> str:
        reasons = [checks.reason(frame_stats(load_image(p, max_side=192))) for p in files]
        counts: dict[str, int] = {}
        for r in reasons:
            if r:
                counts[r] = counts.get(r, 0) + 1
        top = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        return f"{sum(map(bool, reasons)) / max(1, len(reasons)) * 100:6.1f} %  {top}"

    print(f"\n{name}: frame checks alone, {len(train)} training images")
    print(f"    {'known':<18} {len(known):>5} {flagged(known)}")
    kinds = bad_frames(known, args.far_n, args.workdir / "frames-only" / name, rng)
    for kind, files in {**kinds, **far_sets(name, args.far_n, rng)}.items():
        print(f"    {kind:<18} {len(files):>5} {flagged(files)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--model", action="append", default=[], metavar="NAME=FILE",
                    help="use this model file for data set NAME instead of training one")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a training setting (e.g. epochs=1) of the defaults")
    ap.add_argument("--near", action="store_true", help="also hold out each class in turn")
    ap.add_argument("--near-classes", type=int, default=None, help="hold out only the first N")
    ap.add_argument("--far-n", type=int, default=200, help="images per bad-frame / far kind")
    ap.add_argument("--per-class", type=int, default=None, help="train on N images per class")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--retrain", action="store_true", help="train again even if models exist")
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench-out" / "ood")
    ap.add_argument("--frames-only", action="store_true",
                    help="measure the frame checks alone (no training; a minute)")
    args = ap.parse_args()
    args.overrides = {k: json_value(v) for k, v in (s.split("=", 1) for s in args.set)}
    do_near = args.near or args.near_classes is not None
    given = dict(m.split("=", 1) for m in args.model)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()}; work folder {args.workdir}")
    rng = np.random.default_rng(0)
    results = []
    for name in args.datasets:
        if not DATASETS[name].is_dir():
            print(f"{name}: not found at {DATASETS[name]}, skipped")
            continue
        if args.frames_only:
            frames_only(name, args, rng)
            continue
        tag = name if args.per_class is None else f"{name}-{args.per_class}"
        if name in given:
            project_path, model_path = args.workdir / "projects" / f"{tag}.dsproj", Path(
                given[name])
        else:
            folder = subset_folder(name, args.workdir, args.per_class)
            project_path, model_path = train_and_export(tag, folder, args)
        results.append(evaluate_model(name, project_path, model_path, args, rng))
        if do_near:
            results.append(near(name, args))
    out = args.workdir / "bench_ood.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nload average {os.getloadavg()}; figures in {out}")


def json_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


if __name__ == "__main__":
    main()
