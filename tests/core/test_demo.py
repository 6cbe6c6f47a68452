"""The demo project: generated images (no third-party files), imported with classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from densestudio.core.demo import DEMO_CLASSES, create_demo_project, demo_image, make_demo_images
from densestudio.core.store import Project


def test_demo_images_differ_by_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ok = np.asarray(demo_image("ok", rng), dtype=np.float32)
    crack = np.asarray(demo_image("crack", rng), dtype=np.float32)
    assert ok.shape == crack.shape == (128, 128)
    assert crack.min() < ok.min()  # a dark crack line
    paths = make_demo_images(tmp_path / "img", per_class=3)
    assert len(paths) == 3 * len(DEMO_CLASSES)
    assert Image.open(paths[0]).mode == "L"


def test_create_demo_project(tmp_path: Path) -> None:
    path = create_demo_project(tmp_path / "demo.dsproj", per_class=6)
    with Project.open(path) as project:
        assert sorted(c.name for c in project.classes()) == sorted(DEMO_CLASSES)
        counts = project.counts()
        assert counts.total == 24 and counts.count(None) == 0
    assert create_demo_project(path) == path  # reused, not rebuilt
