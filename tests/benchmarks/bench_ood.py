"""How well the exported model's unknown-input score (``ood_score``) separates images unlike
the training images from known ones, on real data.

Far from training: a model trained on all six NEU classes (exported to ONNX and run in ONNX
Runtime, as on the line) sees NEU test images (known) against X-SDD and ELPV images (other
data sets in ../shared), blank/constant frames, saturated frames and blurred NEU test
images: AUROC per kind (goal >= 0.99).

Near: each NEU class in turn is held out of training (a shorter training); the held-out
class's 300 images against the known classes' test images: AUROC per held-out class (goal:
mean >= 0.85), scored with the same DeployModel that the export writes into the graph.

Both: the share of known-class test images flagged at the threshold the export sets (95th
percentile of the validation scores; goal <= 5 %).

    .venv/bin/python tests/benchmarks/bench_ood.py [--arch densenet_bc_tiny --img-size 64
        --epochs 10] [--near-epochs 8] [--skip-near]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from densestudio.core.imaging import file_hash
from densestudio.core.store import Project, bulk_insert_images
from densestudio.ml import export
from densestudio.ml.config import TrainConfig
from densestudio.ml.evaluate import load_run_model
from densestudio.ml.train import fit
from densestudio.runtime.onnx_model import load_onnx

DATA = ROOT.parent / "shared" / "datasets"
NEU = DATA / "neu-surface-defects"
OUT = ROOT / "bench-out" / "ood"


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """P(score of an unknown image > score of a known one), ties counted half."""
    scores = np.concatenate([known, unknown])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tie = scores == value
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    r_unknown = ranks[len(known):].sum()
    n1, n0 = len(unknown), len(known)
    return float((r_unknown - n1 * (n1 + 1) / 2) / (n1 * n0))


def make_project(path: Path, classes: list[str], per_class: int | None = None) -> Project:
    if path.exists():
        path.unlink()
    for extra in path.parent.glob(path.name + "-*"):
        shutil.rmtree(extra, ignore_errors=True)
    project = Project.create(path)
    rows, labels, seen = [], [], set()
    for name in classes:
        for p in sorted((NEU / name).glob("*.jpg"))[:per_class]:
            digest = file_hash(p)
            if digest in seen:  # NEU holds a few identical files; the project keeps one
                continue
            seen.add(digest)
            with Image.open(p) as im:
                w, h, mode = im.width, im.height, im.mode
            rows.append({"path": str(p), "filename": p.name.lower(), "folder": str(p.parent),
                         "content_hash": digest, "byte_size": p.stat().st_size,
                         "width": w, "height": h, "mode": mode, "bit_depth": 8})
            labels.append(name)
    with project.transaction() as s:
        bulk_insert_images(s, rows)
    ids = project.ensure_classes(classes)
    from sqlalchemy import select

    from densestudio.core.models import Image as ImageRow

    with project.session() as s:
        by_path = dict(s.execute(select(ImageRow.path, ImageRow.id)).all())
    for name in classes:
        chosen = [by_path[r["path"]] for r, c in zip(rows, labels, strict=True) if c == name]
        project.set_labels(chosen, ids[name])
    return project


def split_paths(project: Project, run_id: int, split: str) -> list[str]:
    from densestudio.ml.snapshot import load_snapshot

    snap = load_snapshot(project, run_id)
    return [snap.items[i].path for i in snap.indices(split)]


def far_sets(known_test: list[str], rng: np.random.Generator, tmp: Path, n: int
             ) -> dict[str, list[str]]:
    """Images of other kinds, written as files (the runtime reads files)."""
    tmp.mkdir(parents=True, exist_ok=True)
    sets: dict[str, list[str]] = {}
    for name in ("xsdd-steel-strip", "elpv-solar-cells"):
        files = sorted((DATA / name).rglob("*.*"))
        files = [str(files[i]) for i in rng.choice(len(files), min(n, len(files)), False)]
        sets[name] = files
    blank = []
    for i, v in enumerate(np.linspace(0, 255, 12).astype(int)):  # lens cap .. white wall
        noise = rng.normal(0, 2, (200, 200))
        blank.append(tmp / f"blank_{i}.png")
        Image.fromarray(np.clip(v + noise, 0, 255).astype(np.uint8), "L").save(blank[-1])
    sets["blank frames"] = [str(p) for p in blank]
    saturated, blurred = [], []
    for i, p in enumerate(known_test[:n]):
        img = Image.open(p).convert("L")
        arr = np.asarray(img, np.float32)
        saturated.append(tmp / f"saturated_{i}.png")  # over-exposed: x4 gain, clipped
        Image.fromarray(np.clip(arr * 4.0, 0, 255).astype(np.uint8), "L").save(saturated[-1])
        blurred.append(tmp / f"blurred_{i}.png")  # out of focus
        img.filter(ImageFilter.GaussianBlur(6)).save(blurred[-1])
    sets["saturated frames"] = [str(p) for p in saturated]
    sets["blurred NEU"] = [str(p) for p in blurred]
    return sets


def train(project: Project, args: argparse.Namespace, epochs: int) -> tuple[int, float]:
    cfg = TrainConfig(arch=args.arch, img_size=args.img_size, epochs=epochs,
                      batch_size=32, device="cpu", seed=0, tta=False)
    t = time.perf_counter()
    run_id = fit(project, cfg)
    return run_id, time.perf_counter() - t


def far(args: argparse.Namespace, rng: np.random.Generator) -> None:
    classes = sorted(d.name for d in NEU.iterdir() if d.is_dir())
    project = make_project(OUT / "far.dsproj", classes, args.per_class)
    run_id, secs = train(project, args, args.epochs)
    from densestudio.core import runs

    acc = runs.get_run(project, run_id).metrics
    print(f"far: {args.arch} {args.img_size} px, {args.epochs} epochs, "
          f"{args.per_class or 300} images per class, {secs:.0f} s, test "
          f"accuracy {acc.get('test_acc', float('nan')) * 100:.1f} %")
    t = time.perf_counter()
    path = export.export_model(project, run_id, OUT / "far-model.onnx")
    print(f"  ONNX export with parity check and OOD statistics: {time.perf_counter() - t:.0f} s")
    model = load_onnx(path)
    threshold = model.spec.ood_threshold
    known = split_paths(project, run_id, "test")
    known_scores = np.array([r.ood_score for r in model.predict(known)])
    val_flagged = model.metadata["ood"]["calibration"]["flagged"]
    print(f"  threshold {threshold:.4f} (flags {val_flagged * 100:.1f} % of validation); "
          f"known NEU test images flagged: "
          f"{(known_scores > threshold).mean() * 100:.1f} % of {len(known)}")
    print(f"  {'kind':<20} {'n':>4} {'AUROC':>7} {'flagged':>8}")
    every = []
    for kind, files in far_sets(known, rng, OUT / "far-images", args.far_n).items():
        scores = np.array([r.ood_score for r in model.predict(files)])
        every.append(scores)
        print(f"  {kind:<20} {len(files):>4} {auroc(known_scores, scores):>7.4f} "
              f"{(scores > threshold).mean() * 100:>7.1f}%")
    print(f"  {'all far kinds':<20} {sum(map(len, every)):>4} "
          f"{auroc(known_scores, np.concatenate(every)):>7.4f}")
    project.close()


def near(args: argparse.Namespace) -> None:
    import torch

    from densestudio.core import preprocess

    classes = sorted(d.name for d in NEU.iterdir() if d.is_dir())
    print(f"\nnear: each class held out; {args.arch} {args.img_size} px, {args.near_epochs} "
          f"epochs, {args.per_class or 300} images per known class (all 300 held-out images)")
    print(f"  {'held out':<18} {'AUROC':>7} {'known test flagged':>19} {'held out flagged':>17}"
          f" {'test acc':>9} {'s':>5}")
    aurocs, flagged = [], []
    for held in classes:
        known_classes = [c for c in classes if c != held]
        project = make_project(OUT / f"near-{held}.dsproj", known_classes, args.per_class)
        run_id, secs = train(project, args, args.near_epochs)
        model, meta, _ = load_run_model(project, run_id)
        deploy = export.DeployModel(model, 1).eval()
        pixels = export._run_pixels(project, run_id, meta, None)
        ood = export.ood_statistics(deploy, pixels)
        prep = preprocess.from_meta(meta)
        held_px = torch.from_numpy(np.stack([prep.load(p)
                                             for p in sorted((NEU / held).glob("*.jpg"))]))
        _, known_scores = export._run_torch(deploy, pixels.check)
        probs, _ = export._run_torch(deploy, pixels.check)
        _, held_scores = export._run_torch(deploy, held_px)
        a = auroc(known_scores, held_scores)
        f = float((known_scores > ood["threshold"]).mean())
        aurocs.append(a)
        flagged.append(f)
        from densestudio.ml.snapshot import load_snapshot

        snap = load_snapshot(project, run_id)
        labels = np.array([snap.labels[i] for i in snap.indices("test")])
        acc = float((probs.argmax(1) == labels).mean()) if len(labels) == len(probs) else np.nan
        print(f"  {held:<18} {a:>7.4f} {f * 100:>18.1f}% "
              f"{(held_scores > ood['threshold']).mean() * 100:>16.1f}% {acc * 100:>8.1f}% "
              f"{secs:>5.0f}", flush=True)
        project.close()
    print(f"  mean AUROC {np.mean(aurocs):.4f} (goal >= 0.85); known test images flagged "
          f"{np.mean(flagged) * 100:.1f} % on average (goal <= 5 %)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="densenet_bc_tiny")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--near-epochs", type=int, default=8)
    ap.add_argument("--far-n", type=int, default=200, help="images per far kind")
    ap.add_argument("--per-class", type=int, default=None,
                    help="train on the first N images of each class (default: all 300)")
    ap.add_argument("--skip-far", action="store_true")
    ap.add_argument("--skip-near", action="store_true")
    args = ap.parse_args()
    if not NEU.is_dir():
        raise SystemExit(f"NEU not found at {NEU}")
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()}")
    rng = np.random.default_rng(0)
    if not args.skip_far:
        far(args, rng)
    if not args.skip_near:
        near(args)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
