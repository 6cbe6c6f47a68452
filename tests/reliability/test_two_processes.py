"""A CLI import while another process (the GUI) has the project open: both work."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from densestudio.core import history, signoff
from densestudio.core.store import ImageFilter, Project
from tests.core.bad_files import make_class_folders


def test_cli_import_while_project_is_open_elsewhere(tmp_path: Path) -> None:
    first = make_class_folders(tmp_path / "first", classes=("a", "b"), per_class=5)
    second = make_class_folders(tmp_path / "second", classes=("a", "c"), per_class=20,
                                seed=1)
    path = tmp_path / "shared.dsproj"
    cli = [sys.executable, "-m", "densestudio"]
    subprocess.run([*cli, "new", str(path)], check=True, capture_output=True)
    subprocess.run([*cli, "import", str(path), str(first), "--labels-from-subfolders"],
                   check=True, capture_output=True)
    with Project.open(path) as gui:  # stands for the open GUI
        ids = gui.image_ids()
        b = gui.class_by_name("b")
        # the CLI imports while this process keeps labeling
        proc = subprocess.Popen([*cli, "import", str(path), str(second),
                                 "--labels-from-subfolders"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        changes = 0
        while proc.poll() is None or changes < 5:
            gui.set_labels(ids[changes % len(ids): changes % len(ids) + 1], b.id)
            changes += 1
            if changes > 10_000:
                break
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "40 image(s) added" in out
        # "refresh": the already-open project sees the new images and classes
        assert gui.count_images() == 50
        assert {c.name for c in gui.classes()} == {"a", "b", "c"}
        assert gui.count_images(ImageFilter(class_ids=(b.id,))) >= 5
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with Project.open(path) as project:  # both processes appended to one unbroken chain
        assert signoff.verify_project(project).ok
        assert {e.how for e in history.all_history(project)} == {"import", "api"}
        assert history.history_count(project) >= 50
