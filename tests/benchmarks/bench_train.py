"""Training benchmark on NEU surface defects (6 classes x 300 grayscale 200x200 JPEGs).

    .venv/bin/python tests/benchmarks/bench_train.py [--seeds 0 1 2] [--quick] [--data DIR]

Imports the folder into a temporary project (labels from sub-folders, stratified 70/15/15
split), trains the recommended settings (``ml.recommend``, as the Train tab) on the CPU (the
compact DenseNet-BC from scratch) once per seed, and prints test accuracy, macro-F1, wall time
and training images/s. Then it times
the usual tutorial loop (torchvision ImageFolder, PIL Resize + ToTensor per image every epoch,
DataLoader, fp32, torchvision's DenseNet built with the same growth/blocks/width, so the
same network and parameter count) training at the same image size for one epoch, and prints
the speed ratio. Not collected by pytest (file name does not start with test_).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch

from densestudio.core import runs
from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.profile import data_profile
from densestudio.core.store import ImageFilter, Project
from densestudio.ml.events import EpochEnded, PreparingData, RunStarted
from densestudio.ml.recommend import recommend
from densestudio.ml.train import fit

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "neu-surface-defects"


def import_folder(project: Project, folder: Path) -> float:
    t = time.perf_counter()
    run_import(project, [folder], ImportOptions(labels_from_subfolders=True))
    return time.perf_counter() - t


def naive_baseline(project: Project, arch: str, size: int, workers: int, epochs: int = 1) -> float:
    """Images/s of the tutorial loop over the project's training images (after batch 1)."""
    from torchvision import datasets, transforms
    from torchvision.models import DenseNet

    from densestudio.ml.zoo import COMPACT_SPECS, TORCHVISION_SPECS, build_model

    torch.manual_seed(0)
    train_paths = {i.path for i in project.page(ImageFilter(split="train"), limit=1_000_000)}
    tf = transforms.Compose([
        transforms.Resize((size, size)), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.25] * 3),
    ])  # fmt: skip
    ds = datasets.ImageFolder(str(DEFAULT_DATA_ARG), transform=tf)
    keep = [i for i, (p, _) in enumerate(ds.samples) if p in train_paths]
    ds = torch.utils.data.Subset(ds, keep)
    dl = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=workers)
    # The tutorial's model: torchvision's DenseNet with the same growth/blocks/width, i.e.
    # the same network and parameter count as ours (which computes its dense blocks faster).
    growth, blocks, init = {**COMPACT_SPECS, **TORCHVISION_SPECS}[arch]
    model = DenseNet(growth, blocks, init, num_classes=6)
    ours = build_model(arch, 6, 3)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ours.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    n, t0 = 0, None
    for _ in range(epochs):
        for x, y in dl:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if t0 is None:
                t0 = time.perf_counter()  # exclude the first (warm-up) batch
            else:
                n += len(y)
    return n / (time.perf_counter() - t0)


def main() -> int:
    global DEFAULT_DATA_ARG
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--quick", action="store_true", help="4 epochs, one seed (smoke test)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--img-size", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument(
        "--monitor", choices=("val_balanced_acc", "val_macro_f1", "val_acc", "val_loss")
    )
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    DEFAULT_DATA_ARG = args.data
    if not args.data.is_dir():
        print(f"dataset not found: {args.data}")
        return 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        project = Project.create(Path(tmp) / "neu.dsproj")
        secs = import_folder(project, args.data)
        counts = project.counts()
        print(f"import: {counts.total} images in {secs:.1f} s; "
              f"train/val/test = {counts.count(..., 'train')}/{counts.count(..., 'val')}/"
              f"{counts.count(..., 'test')}")
        cfg0 = recommend(data_profile(project), "cpu", weights_available=False).config
        if args.quick:
            cfg0 = cfg0.with_(epochs=4, time_budget_s=None)
            args.seeds = args.seeds[:1]
        if args.img_size:
            cfg0 = cfg0.with_(img_size=args.img_size)
        if args.epochs:
            cfg0 = cfg0.with_(epochs=args.epochs, time_budget_s=None)
        if args.batch_size:
            cfg0 = cfg0.with_(batch_size=args.batch_size)
        if args.lr:
            cfg0 = cfg0.with_(lr=args.lr)
        if args.monitor:
            cfg0 = cfg0.with_(monitor=args.monitor)
        print(f"config: {cfg0.to_json()}")
        results = []
        for seed in args.seeds:
            cfg = cfg0.with_(seed=seed, device="cpu")
            prep: dict[str, float] = {}

            def on_event(e: object, prep: dict = prep) -> None:
                if isinstance(e, PreparingData) and e.done == e.total:
                    prep["data_s"] = time.perf_counter() - prep["t0"]
                    prep["from_disk"] = e.from_disk_cache
                elif isinstance(e, RunStarted):
                    prep["started"] = time.perf_counter() - prep["t0"]
                elif isinstance(e, EpochEnded):
                    print(f"  epoch {e.epoch:>2}: loss {e.train_loss:.3f} val_loss "
                          f"{e.val_loss:.3f} val_acc {e.val_acc * 100:.1f} % "
                          f"{e.images_per_s:.0f} img/s {e.seconds:.1f} s", flush=True)

            prep["t0"] = time.perf_counter()
            run_id = fit(project, cfg, on_event=on_event)
            wall = time.perf_counter() - prep["t0"]
            m = runs.get_run(project, run_id).metrics
            # Median over epochs: robust to other processes sharing the CPU for a while.
            ips = statistics.median(e.images_per_s for e in runs.epoch_metrics(project, run_id))
            results.append((seed, m["test_acc"], m["test_macro_f1"], wall, ips))
            print(f"seed {seed}: test acc {m['test_acc'] * 100:.2f} %  macro-F1 "
                  f"{m['test_macro_f1'] * 100:.2f} %  wall {wall:.0f} s  train "
                  f"{ips:.0f} img/s median ({m['train_images_per_s']:.0f} mean) (data ready in "
                  f"{prep.get('data_s', 0):.1f} s, {int(prep.get('from_disk', 0))} from disk "
                  f"cache; best epoch {m['best_epoch']})", flush=True)
            names = runs.run_class_names(project, run_id)
            wrong = [q for q in runs.predictions(project, run_id, "test")
                     if q.pred_index != q.true_index]
            paths = {i.id: Path(i.path).name for i in project.images_by_ids(
                [q.image_id for q in wrong])}  # fmt: skip
            for q in wrong:
                print(f"    wrong: {paths[q.image_id]} {names[q.true_index]} -> "
                      f"{names[q.pred_index]} ({q.confidence:.2f})")
        accs = [r[1] for r in results]
        print(f"\nmean test accuracy {statistics.mean(accs) * 100:.2f} % over seeds "
              f"{[r[0] for r in results]}; mean macro-F1 "
              f"{statistics.mean(r[2] for r in results) * 100:.2f} %; max wall "
              f"{max(r[3] for r in results):.0f} s")
        ours = statistics.mean(r[4] for r in results)
        if not args.no_baseline:
            naive = {w: naive_baseline(project, cfg0.arch, cfg0.img_size, w) for w in (0, 2)}
            best_naive = max(naive.values())
            print(f"naive tutorial loop, 1 epoch at {cfg0.img_size} px: "
                  + ", ".join(f"num_workers={w}: {v:.0f} img/s" for w, v in naive.items()))
            print(f"ours: {ours:.0f} img/s  ->  speed ratio {ours / best_naive:.2f}x "
                  f"(vs the faster naive variant)")
        project.close()
    return 0


DEFAULT_DATA_ARG = DEFAULT_DATA

if __name__ == "__main__":
    raise SystemExit(main())
