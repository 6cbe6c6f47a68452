"""One small run of 4:1 strips exported to ONNX, shared by the deployment tests.

The run knows two classes (dark, bright); "stripes" is held out of training so the
out-of-distribution flag can be tested on a class the model never saw. Its canvas is
128 x 32 (wide strips get a wide canvas), so square NEU images are letterboxed into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densestudio.core.store import Project
from densestudio.ml import export
from densestudio.ml.train import fit
from tests.ml.conftest import add_images, tiny_config

REPO = Path(__file__).resolve().parents[2]
NEU = REPO.parent / "shared" / "datasets" / "neu-surface-defects"


def strip(kind: str, rng: np.random.Generator, width: int = 96, height: int = 24) -> np.ndarray:
    noise = rng.normal(0, 12, (height, width))
    if kind == "dark":
        arr = 60 + noise
    elif kind == "bright":
        arr = 190 + noise
    else:  # stripes
        arr = np.where((np.arange(width) // 3) % 2 == 0, 40, 200)[None, :] + noise
    return np.clip(arr, 0, 255).astype(np.uint8)


def write_strips(folder: Path, kinds: tuple[str, ...], n: int, seed: int,
                 width: int = 96, height: int = 24) -> list[tuple[Path, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for kind in kinds:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            p = folder / kind / f"{kind}_{seed}_{i}.png"
            Image.fromarray(strip(kind, rng, width, height), mode="L").save(p)
            out.append((p, kind))
    return out


def neu_images(per_class: int = 1) -> list[Path]:
    """A few real NEU images (one per class by default); skips when the data is absent."""
    if not NEU.is_dir():
        pytest.skip(f"NEU data set not found at {NEU}")
    return [p for d in sorted(NEU.iterdir()) if d.is_dir()
            for p in sorted(d.glob("*.jpg"))[:per_class]]


@dataclass
class StripRun:
    project: Project
    run_id: int
    model_path: Path
    events: list
    tmp: Path


@pytest.fixture(scope="session")
def strip_run(tmp_path_factory) -> StripRun:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("strips")
    files = write_strips(tmp / "imgs", ("dark", "bright"), 16, seed=0)
    project = Project.create(tmp / "strips.dsproj")
    add_images(project, files)
    cfg = tiny_config(img_size=64, aspect=4.0, epochs=2, augment="light", tta=True)
    run_id = fit(project, cfg)
    events: list = []
    path = export.export_model(project, run_id, tmp / "strips", on_event=events.append)
    yield StripRun(project, run_id, path, events, tmp)
    project.close()
