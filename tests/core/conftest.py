from __future__ import annotations

from pathlib import Path

import pytest

from densestudio.core.store import Project

NEU = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "neu-surface-defects"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project.create(tmp_path / "test.dsproj")
    yield p
    p.close()


@pytest.fixture
def neu_subset(tmp_path: Path) -> Path:
    """Symlinks to 4 real NEU images per class (read from ../shared, never copied)."""
    if not NEU.is_dir():
        pytest.skip("NEU dataset not available at ../shared/datasets")
    root = tmp_path / "neu"
    for class_dir in sorted(p for p in NEU.iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir(parents=True)
        for src in sorted(class_dir.iterdir())[:4]:
            (root / class_dir.name / src.name).symlink_to(src)
    return root
