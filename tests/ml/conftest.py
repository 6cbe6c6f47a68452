"""Tiny synthetic projects for the training-engine tests (no network, seconds of CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densestudio.core.imaging import file_hash
from densestudio.core.store import Project, bulk_insert_images
from densestudio.ml.config import TrainConfig

CLASS_NAMES = ("dark", "bright", "stripes")


def make_image(kind: int, rng: np.random.Generator, size: int = 24) -> np.ndarray:
    noise = rng.normal(0, 12, (size, size))
    if kind == 0:
        arr = 60 + noise
    elif kind == 1:
        arr = 190 + noise
    else:
        arr = np.where((np.arange(size) // 3) % 2 == 0, 40, 200)[None, :] + noise
    return np.clip(arr, 0, 255).astype(np.uint8)


def write_images(folder: Path, n_per_class: int, seed: int = 0, classes: int = 3,
                 size: int = 24) -> list[tuple[Path, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for c in range(classes):
        d = folder / CLASS_NAMES[c]
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            p = d / f"{CLASS_NAMES[c]}_{seed}_{i}.png"
            Image.fromarray(make_image(c, rng, size), mode="L").save(p)
            out.append((p, CLASS_NAMES[c]))
    return out


def copy_project(src: Path, dst: Path) -> Path:
    """Copy a project the way a user must: the file and its -runs folder (checkpoint paths
    are stored relative to the project file)."""
    import shutil

    shutil.copy(src, dst)
    runs = src.with_name(src.name + "-runs")
    if runs.is_dir():
        shutil.copytree(runs, dst.with_name(dst.name + "-runs"))
    return dst


def add_images(project: Project, files: list[tuple[Path, str | None]]) -> list[int]:
    """Insert image rows and label them (splits are assigned by the store)."""
    rows = []
    for p, _ in files:
        with Image.open(p) as im:
            w, h, mode = im.width, im.height, im.mode
        rows.append({
            "path": str(p), "filename": p.name.lower(), "folder": str(p.parent),
            "content_hash": file_hash(p), "byte_size": p.stat().st_size, "width": w,
            "height": h, "mode": mode, "bit_depth": 8,
        })  # fmt: skip
    with project.transaction() as s:
        bulk_insert_images(s, rows)
    names = sorted({c for _, c in files if c})
    ids = project.ensure_classes([n for n in CLASS_NAMES if n in names])
    by_path = {}
    from sqlalchemy import select

    from densestudio.core.models import Image as ImageRow

    with project.session() as s:
        for i, path in s.execute(select(ImageRow.id, ImageRow.path)):
            by_path[path] = i
    for name in names:
        project.set_labels([by_path[str(p)] for p, c in files if c == name], ids[name])
    return [by_path[str(p)] for p, _ in files]


@pytest.fixture
def tiny_project(tmp_path: Path) -> Project:
    files = write_images(tmp_path / "imgs", n_per_class=14)
    project = Project.create(tmp_path / "p.dsproj")
    add_images(project, files)
    yield project
    project.close()


def tiny_config(**kw: object) -> TrainConfig:
    base = dict(
        arch="densenet_bc_tiny", img_size=32, epochs=2, batch_size=6, lr=3e-3,
        augment="light", ema=False, tta=False, device="cpu", seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def store_audit(project: Project, ids: list[int], labels: list[int], probs: np.ndarray,
                names: tuple[str, ...]) -> int:
    """A finished label audit with these out-of-sample probabilities, without training."""
    from densestudio.core import runs

    run_id = runs.create_run(
        project, name="label audit", class_names=names,
        config_json='{"kind": "label_audit", "folds": 3, "epochs": 4, "img_size": 32}',
        snapshot=[(i, c, "train") for i, c in zip(ids, labels, strict=False)])
    runs.save_predictions(project, run_id, "oos", [
        runs.PredictionInfo(i, "oos", c, int(probs[r].argmax()), float(probs[r].max()), 0.1,
                            probs[r].astype(np.float32))
        for r, (i, c) in enumerate(zip(ids, labels, strict=False))])
    runs.update_run(project, run_id, status="finished", finished=True)
    return run_id


def small_class_audit(project: Project, folder: Path) -> list[int]:
    """12 dark + 12 bright images and 6 stripes that the audit model calls dark at 96 %
    (it barely predicts stripes), plus one real error (the first dark image, called bright).
    Returns the image ids."""
    files = (write_images(folder / "big", n_per_class=12, classes=2)
             + write_images(folder / "small", n_per_class=6, seed=1, classes=3)[12:])
    ids = add_images(project, files)
    labels = [CLASS_NAMES.index(c) for _, c in files]
    probs = np.full((len(ids), 3), 0.02)
    for row, given in enumerate(labels):
        probs[row, 0 if given == 2 else given] = 0.96
    probs[0] = (0.02, 0.96, 0.02)
    store_audit(project, ids, labels, probs, tuple(CLASS_NAMES[:3]))
    return ids
