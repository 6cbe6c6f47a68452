"""A small OK/NG project with two crafted runs (stored predictions, no training) for the
sign-off GUI tests: 40 "ok" and 45 "scratch" generated images, all in a locked test split.

- run A ("baseline"): right on every image, P(true) = 0.9;
- run B ("candidate"): calls ``scratch_00`` ok (P(ok) = 0.8); the other defects get
  P(ok) from 0.02 to 0.46, the good parts 0.9 to 0.99.
Predictions are stored for the test split (the OK/NG window then uses them too).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import update

from densestudio.core import runs
from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.models import Image as ImageRow
from densestudio.core.store import Project, lock_test_split

NAMES = ("ok", "scratch")
N_OK, N_SCRATCH = 40, 45
MISSED = "scratch_00.png"  # the defect run B calls good


def write_images(folder: Path) -> None:
    rng = np.random.default_rng(3)
    for name, n in (("ok", N_OK), ("scratch", N_SCRATCH)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.normal(150, 10, (20, 20))
            if name == "scratch":
                arr[:, 8 + i % 4] = 30  # a dark vertical line
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L").save(
                folder / name / f"{name}_{i:02d}.png")


def p_good_of(filename: str) -> float:
    """Run B's P(ok) for an image."""
    name, _, rest = filename.partition("_")
    i = int(rest.split(".")[0])
    if name == "ok":
        return 0.9 + 0.09 * i / (N_OK - 1)
    return 0.8 if filename == MISSED else 0.02 + 0.44 * i / (N_SCRATCH - 1)


def crafted_run(project: Project, name: str, p_good: dict[int, float], truth: dict[int, int]
                ) -> int:
    snapshot = [(i, t, "test") for i, t in truth.items()]
    run_id = runs.create_run(project, name=name, config_json=json.dumps({"arch": "crafted"}),
                             class_names=NAMES, snapshot=snapshot)
    preds = []
    for image_id, true in truth.items():
        p = p_good[image_id]
        probs = np.array([p, 1 - p], np.float32)
        pred = int(np.argmax(probs))
        preds.append(runs.PredictionInfo(image_id, "test", true, pred, float(probs[pred]),
                                         float(-np.log(probs[true])), probs))
    runs.save_predictions(project, run_id, "test", preds)
    runs.update_run(project, run_id, status="finished",
                    metrics={"data_fingerprint": "crafted", "test_acc": 1.0})
    return run_id


def make_signoff_project(root: Path) -> tuple[Path, int, int]:
    """(project path, run A, run B)."""
    write_images(root / "images")
    path = root / "signoff.dsproj"
    with Project.create(path) as project:
        run_import(project, [root / "images"], ImportOptions(labels_from_subfolders=True))
        with project.transaction() as s:
            s.execute(update(ImageRow).values(split="test"))
        lock_test_split(project, True)
        infos = project.images_by_ids(project.image_ids())
        classes = {c.id: c.name for c in project.classes()}
        truth = {i.id: NAMES.index(classes[i.label_id]) for i in infos}
        right = {i.id: 0.9 if truth[i.id] == 0 else 0.1 for i in infos}
        b = {i.id: p_good_of(Path(i.path).name) for i in infos}
        run_a = crafted_run(project, "baseline", right, truth)
        run_b = crafted_run(project, "candidate", b, truth)
    return path, run_a, run_b


def image_id_of(project: Project, filename: str) -> int:
    return next(i.id for i in project.images_by_ids(project.image_ids())
                if Path(i.path).name == filename)
