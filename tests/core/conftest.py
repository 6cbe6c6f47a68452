from __future__ import annotations

from pathlib import Path

import pytest

from densestudio.core.store import Project

NEU = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "neu-surface-defects"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Project:
    """An empty project: a file, and (the same tests again) a shared project on the test
    PostgreSQL server whose files root is a temporary folder."""
    if request.param == "sqlite":
        p = Project.create(tmp_path / "test.dsproj")
    else:
        p = Project.create(request.getfixturevalue("pg_url"), files_root=tmp_path / "files")
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
